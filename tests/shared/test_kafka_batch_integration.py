"""ConsumerRunner's optional batch handler against a real broker: whole batches at once, and when a batch fails,
record by record so that only the failing record is retried and dead-lettered."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from shared.envelope import CloudEvent, decode, encode, new_event
from shared.events import CustodyStatusChanged, Payload, SubjectIdentifier
from shared.kafka.consumer import ConsumerRunner, DecodedRecord
from shared.kafka.producer import create_producer
from shared.kafka.records import H_ATTEMPT, header
from shared.kafka.retry_topics import RetryTopicPolicy
from shared.settings import KafkaSettings
from shared.topics import (
    CUSTODY_STATUS_CHANGED,
    SUBJECT_SEALED,
    consumer_group_topics,
    dead_letter_topic,
    ensure_topics,
)
from shared.vocabulary import CustodyStatus, IdentifierKind
from tests.kafkautil import produce_raw, read_topic, running

pytestmark = pytest.mark.integration


def custody_event(n: int) -> CloudEvent[CustodyStatusChanged]:
    data = CustodyStatusChanged(
        agency_id="agency-a",
        subject_id=f"s-{n}",
        identifiers=[SubjectIdentifier(kind=IdentifierKind.CASE_NUMBER, value=f"CR-{n}")],
        status=CustodyStatus.IN_CUSTODY,
        effective_at=datetime(2026, 1, 1, tzinfo=UTC),
        agency_record_id=f"r-{n}",
        feed_batch_id="b-1",
        received_at=datetime.now(UTC),
    )
    return new_event(data, source="/test")


async def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    for _ in range(int(timeout / 0.1)):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


async def test_batches_go_to_the_batch_handler_and_offsets_follow(kafka_settings: KafkaSettings) -> None:
    group = "batch-test"
    topic = kafka_settings.topic(CUSTODY_STATUS_CHANGED.name)
    await ensure_topics(kafka_settings, [CUSTODY_STATUS_CHANGED, *consumer_group_topics(group)])
    events = [custody_event(n) for n in range(40)]
    await produce_raw(kafka_settings, topic, [(b"k", encode(e)) for e in events])
    batches: list[list[str]] = []
    one_by_one: list[str] = []

    async def handler(event: CloudEvent[Payload], _: ConsumerRecord[bytes, bytes]) -> None:
        one_by_one.append(event.id)

    async def batch_handler(batch: Sequence[DecodedRecord]) -> None:
        batches.append([event.id for event, _ in batch])

    producer = await create_producer(kafka_settings)
    runner = ConsumerRunner(
        kafka_settings,
        group_id=group,
        topics=[CUSTODY_STATUS_CHANGED],
        handler=handler,
        batch_handler=batch_handler,
        producer=producer,
    )
    async with running(runner):
        await wait_until(lambda: sum(len(b) for b in batches) >= len(events))
        assert runner.consumer is not None
        committed = await wait_for_commit(runner, topic, len(events))
    assert [event_id for batch in batches for event_id in batch] == [e.id for e in events], "in order, each once"
    assert len(batches) < len(events), "several events per call"
    assert one_by_one == []
    assert committed == len(events)


async def wait_for_commit(runner: ConsumerRunner, topic: str, expected: int) -> int:
    """The group's committed offsets on ``topic``, summed, once they reach ``expected`` (or after 10 s)."""
    consumer = runner.consumer
    assert consumer is not None
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    total = 0
    for _ in range(100):
        total = 0
        for partition in partitions:
            total += await consumer.committed(partition) or 0
        if total >= expected:
            break
        await asyncio.sleep(0.1)
    return total


async def test_a_failing_batch_falls_back_so_only_the_bad_record_is_retried(kafka_settings: KafkaSettings) -> None:
    group = "batch-fallback-test"
    topic = kafka_settings.topic(CUSTODY_STATUS_CHANGED.name)
    await ensure_topics(kafka_settings, [CUSTODY_STATUS_CHANGED, *consumer_group_topics(group)])
    events = [custody_event(n) for n in range(10)]
    doomed = events[4]
    # A poison message in the middle never reaches either handler: straight to the dead-letter topic.
    messages: list[tuple[bytes | None, bytes | None]] = [(b"k", encode(e)) for e in events]
    messages.insert(6, (b"k", b"{not json"))
    await produce_raw(kafka_settings, topic, messages)
    applied: dict[str, int] = {}
    batch_calls: list[int] = []

    async def handler(event: CloudEvent[Payload], _: ConsumerRecord[bytes, bytes]) -> None:
        if event.id == doomed.id:
            raise RuntimeError("this record cannot be stored")
        applied[event.id] = applied.get(event.id, 0) + 1

    async def batch_handler(batch: Sequence[DecodedRecord]) -> None:
        batch_calls.append(len(batch))
        if any(event.id == doomed.id for event, _ in batch):
            raise RuntimeError("the batch statement failed")
        for event, _ in batch:
            applied[event.id] = applied.get(event.id, 0) + 1

    producer = await create_producer(kafka_settings)
    runner = ConsumerRunner(
        kafka_settings,
        group_id=group,
        topics=[CUSTODY_STATUS_CHANGED],
        handler=handler,
        batch_handler=batch_handler,
        producer=producer,
        retry=RetryTopicPolicy(max_attempts=2, base_delay=0.1, max_delay=0.2),
    )
    async with running(runner):
        dead = await read_topic(
            kafka_settings, kafka_settings.topic(dead_letter_topic(group)), until=lambda r: len(r) >= 2
        )
    assert set(applied) == {e.id for e in events if e.id != doomed.id}, "every other record applied"
    assert all(count == 1 for count in applied.values()), "none applied twice"
    assert all(size > 0 for size in batch_calls)
    poison = [r for r in dead if r.value == b"{not json"]
    doomed_dead = [r for r in dead if r.value != b"{not json"]
    assert len(poison) == 1
    assert [decode(r.value).id for r in doomed_dead] == [doomed.id]
    assert header(doomed_dead[0], H_ATTEMPT) == "2", "retried through the retry topic, then dead-lettered"


async def test_in_a_transaction_a_failed_batch_is_aborted_so_its_sends_are_never_published(
    kafka_settings: KafkaSettings, unique: str
) -> None:
    group = "batch-transaction-test"
    topic = kafka_settings.topic(CUSTODY_STATUS_CHANGED.name)
    output = kafka_settings.topic(SUBJECT_SEALED.name)  # any other topic: where the handlers publish
    await ensure_topics(kafka_settings, [CUSTODY_STATUS_CHANGED, SUBJECT_SEALED, *consumer_group_topics(group)])
    events = [custody_event(n) for n in range(8)]
    doomed = events[3]
    await produce_raw(kafka_settings, topic, [(b"k", encode(e)) for e in events])
    producer = await create_producer(kafka_settings, transactional_id=f"batch-{unique}")
    runner: ConsumerRunner

    async def publish(event: CloudEvent[Payload]) -> None:
        await runner.producer.send_and_wait(output, value=event.id.encode())

    async def handler(event: CloudEvent[Payload], _: ConsumerRecord[bytes, bytes]) -> None:
        if event.id == doomed.id:
            raise RuntimeError("this record cannot be handled")
        await publish(event)

    async def batch_handler(batch: Sequence[DecodedRecord]) -> None:
        for event, _ in batch:  # publishes the records before the doomed one, then fails: all must be discarded
            if event.id == doomed.id:
                raise RuntimeError("the batch failed half way")
            await publish(event)

    runner = ConsumerRunner(
        kafka_settings,
        group_id=group,
        topics=[CUSTODY_STATUS_CHANGED],
        handler=handler,
        batch_handler=batch_handler,
        producer=producer,
        retry=RetryTopicPolicy(max_attempts=1),
        transactional=True,
    )
    async with running(runner):
        await read_topic(kafka_settings, kafka_settings.topic(dead_letter_topic(group)), until=lambda r: len(r) >= 1)
        published = await read_topic(kafka_settings, output, until=lambda r: len(r) >= len(events) - 1)
        await asyncio.sleep(1)
        published = await read_topic(kafka_settings, output, until=lambda r: len(r) >= len(published))
    ids = [record.value.decode() for record in published if record.value is not None]
    assert sorted(ids) == sorted(e.id for e in events if e.id != doomed.id), "each good record published once"
