"""The shared plumbing against real Kafka and PostgreSQL: outbox, idempotent consumer, retries and dead letters."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

import asyncpg
import pytest
from aiokafka import ConsumerRecord

from shared.db import apply_migrations
from shared.envelope import CloudEvent, decode, encode, new_event
from shared.events import CustodyStatusChanged, Payload, SubjectIdentifier, SubjectSealed
from shared.idempotency import apply_once
from shared.kafka.consumer import ConsumerRunner, UnexpectedEventError
from shared.kafka.producer import UndeclaredTopicError, create_producer
from shared.kafka.records import H_ATTEMPT, H_ERROR, header
from shared.kafka.retry_topics import RetryTopicPolicy
from shared.outbox import OutboxRelay, enqueue
from shared.settings import KafkaSettings
from shared.topics import (
    CUSTODY_STATUS_CHANGED,
    SUBJECT_SEALED,
    consumer_group_topics,
    dead_letter_topic,
    ensure_topics,
)
from shared.vocabulary import CustodyStatus, IdentifierKind
from tests.kafkautil import produce_raw, read_exactly, read_topic, running

pytestmark = pytest.mark.integration


def custody_event(n: int, subject: str = "s-1") -> CloudEvent[CustodyStatusChanged]:
    data = CustodyStatusChanged(
        agency_id="agency-a",
        subject_id=subject,
        identifiers=[SubjectIdentifier(kind=IdentifierKind.CASE_NUMBER, value=f"CR-{subject}")],
        status=CustodyStatus.RELEASED if n % 2 else CustodyStatus.IN_CUSTODY,
        effective_at=datetime(2026, 1, 1, tzinfo=UTC),
        agency_record_id=f"r-{n}",
        feed_batch_id="b-1",
        received_at=datetime.now(UTC),
    )
    return new_event(data, source="/test")


@pytest.fixture
async def migrated(pool: asyncpg.Pool) -> asyncpg.Pool:
    await apply_migrations(pool, ["shared"])
    return pool


async def test_migrations_run_once(migrated: asyncpg.Pool) -> None:
    assert await apply_migrations(migrated, ["shared"]) == []
    names = [r["name"] for r in await migrated.fetch("SELECT name FROM schema_migrations")]
    assert names == ["shared:0001_outbox.sql"]


async def test_outbox_survives_a_crash_between_commit_and_publish(
    migrated: asyncpg.Pool, kafka_settings: KafkaSettings
) -> None:
    topic = kafka_settings.topic(CUSTODY_STATUS_CHANGED.name)
    await ensure_topics(kafka_settings, [CUSTODY_STATUS_CHANGED])
    events = [custody_event(n) for n in range(5)]
    async with migrated.acquire() as connection, connection.transaction():
        for event in events:
            await enqueue(connection, topic, "agency-a/s-1", event)
    # The service "crashed" here: committed, nothing published. A new relay publishes everything, in order.
    producer = await create_producer(kafka_settings)
    try:
        relay = OutboxRelay(migrated, producer, service="test")
        async with migrated.acquire() as connection:
            assert await relay.publish_pending(connection) == 5
            assert await relay.publish_pending(connection) == 0
    finally:
        await producer.stop()
    records = await read_exactly(kafka_settings, topic, 5)
    assert [decode(r.value).id for r in records] == [e.id for e in events]
    assert {r.key for r in records} == {b"agency-a/s-1"}


async def test_publish_without_bookkeeping_is_republished_and_applied_once(
    migrated: asyncpg.Pool, kafka_settings: KafkaSettings
) -> None:
    topic = kafka_settings.topic(CUSTODY_STATUS_CHANGED.name)
    await ensure_topics(kafka_settings, [CUSTODY_STATUS_CHANGED])
    event = custody_event(1)
    async with migrated.acquire() as connection, connection.transaction():
        await enqueue(connection, topic, "k", event)
    producer = await create_producer(kafka_settings)
    try:
        relay = OutboxRelay(migrated, producer, service="test")
        # Crash after the send, before the row is marked: the transaction that marks it never commits.
        async with migrated.acquire() as connection:
            with contextlib.suppress(RuntimeError):
                async with connection.transaction():
                    await relay.publish_pending(connection)
                    raise RuntimeError("crash before bookkeeping commits")
            assert await relay.publish_pending(connection) == 1
    finally:
        await producer.stop()
    records = await read_exactly(kafka_settings, topic, 2)
    assert len(records) == 2, "at-least-once: the event was published twice"

    applied: list[str] = []

    async def apply(_: object) -> None:
        applied.append("x")

    for record in records:
        await apply_once(migrated, "test-consumer", decode(record.value).id, apply)
    assert applied == ["x"], "the idempotent consumer applied the redelivered event once"


async def test_poison_message_goes_to_dlq_and_the_partition_flows_on(kafka_settings: KafkaSettings) -> None:
    group = "poison-test"
    topic = kafka_settings.topic(CUSTODY_STATUS_CHANGED.name)
    await ensure_topics(kafka_settings, [CUSTODY_STATUS_CHANGED, *consumer_group_topics(group)])
    seen: list[str] = []

    async def handler(event: CloudEvent[Payload], _: ConsumerRecord[bytes, bytes]) -> None:
        seen.append(event.id)

    good = custody_event(1)
    # Same key, so the poison message and the good one share a partition, poison first.
    await produce_raw(kafka_settings, topic, [(b"same", b"{not json"), (b"same", encode(good))])
    producer = await create_producer(kafka_settings)
    runner = ConsumerRunner(
        kafka_settings, group_id=group, topics=[CUSTODY_STATUS_CHANGED], handler=handler, producer=producer
    )
    async with running(runner):
        dead = await read_topic(
            kafka_settings, kafka_settings.topic(dead_letter_topic(group)), until=lambda r: len(r) >= 1
        )
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.1)
    assert seen == [good.id]
    assert dead[0].value == b"{not json"
    assert "not JSON" in (header(dead[0], H_ERROR) or "")


async def test_failures_retry_without_blocking_then_dead_letter(kafka_settings: KafkaSettings) -> None:
    group = "retry-test"
    topic = kafka_settings.topic(CUSTODY_STATUS_CHANGED.name)
    await ensure_topics(kafka_settings, [CUSTODY_STATUS_CHANGED, *consumer_group_topics(group)])
    flaky, doomed, fine = custody_event(1, "flaky"), custody_event(2, "doomed"), custody_event(3, "fine")
    calls: dict[str, int] = {}

    async def handler(event: CloudEvent[Payload], _: ConsumerRecord[bytes, bytes]) -> None:
        calls[event.id] = calls.get(event.id, 0) + 1
        if event.id == doomed.id or (event.id == flaky.id and calls[event.id] == 1):
            raise RuntimeError("downstream unavailable")

    await produce_raw(kafka_settings, topic, [(b"k", encode(doomed)), (b"k", encode(flaky)), (b"k", encode(fine))])
    producer = await create_producer(kafka_settings)
    runner = ConsumerRunner(
        kafka_settings,
        group_id=group,
        topics=[CUSTODY_STATUS_CHANGED],
        handler=handler,
        producer=producer,
        retry=RetryTopicPolicy(max_attempts=3, base_delay=0.2, max_delay=0.5),
    )
    async with running(runner):
        dead = await read_topic(
            kafka_settings, kafka_settings.topic(dead_letter_topic(group)), until=lambda r: len(r) >= 1
        )
    assert calls[fine.id] == 1, "a failing message never blocks the ones behind it"
    assert calls[flaky.id] == 2, "a temporary failure succeeds on retry"
    assert calls[doomed.id] == 3, "bounded attempts"
    assert decode(dead[0].value).id == doomed.id
    assert header(dead[0], H_ATTEMPT) == "3"
    assert "downstream unavailable" in (header(dead[0], H_ERROR) or "")


async def test_an_event_the_topic_does_not_carry_is_dead_lettered_at_once(kafka_settings: KafkaSettings) -> None:
    """A contract break (another type on the topic, or a type the handler refuses) is never retried nor dropped."""
    group = "contract-break-test"
    topic = kafka_settings.topic(CUSTODY_STATUS_CHANGED.name)
    await ensure_topics(kafka_settings, [CUSTODY_STATUS_CHANGED, *consumer_group_topics(group)])
    foreign = new_event(
        SubjectSealed(
            agency_id="agency-a",
            subject_id="s-1",
            identifiers=[SubjectIdentifier(kind=IdentifierKind.CASE_NUMBER, value="CR-1")],
            sealed_at=datetime.now(UTC),
        ),
        source="/test",
    )
    refused, fine = custody_event(1, "refused"), custody_event(2, "fine")
    calls: list[str] = []

    async def handler(event: CloudEvent[Payload], record: ConsumerRecord[bytes, bytes]) -> None:
        calls.append(event.id)
        if event.id == refused.id:
            raise UnexpectedEventError.of(event, record)

    await produce_raw(kafka_settings, topic, [(b"k", encode(foreign)), (b"k", encode(refused)), (b"k", encode(fine))])
    producer = await create_producer(kafka_settings)
    runner = ConsumerRunner(
        kafka_settings, group_id=group, topics=[CUSTODY_STATUS_CHANGED], handler=handler, producer=producer
    )
    async with running(runner):
        dead = await read_topic(
            kafka_settings, kafka_settings.topic(dead_letter_topic(group)), until=lambda r: len(r) >= 2
        )
        for _ in range(100):
            if fine.id in calls:
                break
            await asyncio.sleep(0.1)
    assert calls == [refused.id, fine.id], "the foreign type never reaches the handler; each is tried once"
    assert [decode(record.value).id for record in dead] == [foreign.id, refused.id]
    assert "a contract break" in (header(dead[0], H_ERROR) or "")
    assert "the handler does not handle" in (header(dead[1], H_ERROR) or "")
    assert all(header(record, H_ATTEMPT) is None for record in dead), "dead-lettered without retries"


async def test_a_producer_writes_only_to_its_declared_topics(kafka_settings: KafkaSettings) -> None:
    await ensure_topics(kafka_settings, [CUSTODY_STATUS_CHANGED, SUBJECT_SEALED])
    producer = await create_producer(kafka_settings, allowed_topics=[CUSTODY_STATUS_CHANGED.name])
    try:
        with pytest.raises(UndeclaredTopicError, match=r"custody\.subject-sealed\.v1"):
            await producer.send_and_wait(kafka_settings.topic(SUBJECT_SEALED.name), value=b"{}")
        event = custody_event(1)
        await producer.send_and_wait(kafka_settings.topic(CUSTODY_STATUS_CHANGED.name), value=encode(event))
    finally:
        await producer.stop()
    records = await read_topic(
        kafka_settings,
        kafka_settings.topic(CUSTODY_STATUS_CHANGED.name),
        until=lambda found: any(decode(r.value).id == event.id for r in found),
    )
    mine = next(record for record in records if decode(record.value).id == event.id)
    assert header(mine, "content-type") == "application/cloudevents+json", "set even when the caller gave none"
