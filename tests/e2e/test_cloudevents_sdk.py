"""Every record on every topic of a run is a CloudEvent that the official SDK reads (Kafka binding, structured
content mode), with one ``source`` per service and a W3C ``traceparent``; our own decoder reads each one too."""

from __future__ import annotations

import functools
import time
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from cloudevents.core.bindings.kafka import KafkaMessage, from_kafka_event

from devservers.driver import SystemDriver, custody_record
from devservers.stack import Stack
from shared.envelope import TRACEPARENT, decode, event_source
from shared.settings import KafkaSettings

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SERVICES = ("ingest", "subscription", "matching", "delivery", "ops")


async def everything_on(kafka: KafkaSettings, topic: str, partition_count: int) -> list[ConsumerRecord[bytes, bytes]]:
    """Every committed record of ``topic`` up to its end now."""
    consumer = AIOKafkaConsumer(**kafka.consumer_kwargs(f"ce-reader-{uuid.uuid4().hex[:8]}", read_committed=True))
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(partition_count)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + 60
        behind = list(partitions)
        while behind:
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            batch = await consumer.getmany(timeout_ms=500)
            for found in batch.values():
                records.extend(found)
            behind = [p for p in behind if await consumer.position(p) < ends[p]]
        return records
    finally:
        await consumer.stop()


def mentions(status: str, messages: list[dict[str, Any]]) -> bool:
    return any(status in message["body"] for message in messages)


async def test_every_record_of_a_run_is_read_by_the_cloudevents_sdk(
    system: SystemDriver, stack: Stack, kafka_bootstrap: str
) -> None:
    token = uuid.uuid4().hex[:6]
    agency, case = f"ce-{token}", f"CR-{token}"
    api_key = await system.create_agency(agency)
    victim = await system.subscribe(agency, case, sms=f"+1737558{int(token, 16) % 10_000:04d}")
    await system.verify(victim, "sms")
    await system.wait_for_matching(agency, reachable_contacts=1)
    for status in ("BOOKED", "RELEASED"):  # two changes: every kind of record of a notice, twice
        await system.push(agency, api_key, [custody_record(f"r-{token}-{status}", case, status)])
        await system.wait_for("sms", victim.sms or "", functools.partial(mentions, status))

    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=stack.topic_prefix, client_id="ce-test")
    admin = AIOKafkaAdminClient(**kafka.common_kwargs())
    await admin.start()
    try:
        names = sorted(topic for topic in await admin.list_topics() if topic.startswith(stack.topic_prefix))
        topics = {found["topic"]: len(found["partitions"]) for found in await admin.describe_topics(names)}
    finally:
        await admin.close()
    refused: list[str] = []
    sources: set[str] = set()
    read = 0
    for topic, partition_count in topics.items():
        for record in await everything_on(kafka, topic, partition_count):
            read += 1
            message = KafkaMessage(headers=dict(record.headers or ()), key=record.key, value=record.value or b"")
            try:
                event = from_kafka_event(message)
            except Exception as error:  # every refusal is collected and reported
                refused.append(f"{topic}@{record.offset}: {type(error).__name__}: {error}")
                continue
            ours = decode(record.value)
            assert event.get_id() == ours.id
            assert event.get_type() == ours.type
            assert TRACEPARENT.match(str(event.get_extension("traceparent"))), f"{topic}@{record.offset}"
            sources.add(event.get_source())
    assert read > 10, "the run published events"
    assert not refused, "the CloudEvents SDK refused:\n" + "\n".join(refused[:20])
    assert sources <= {event_source(service) for service in SERVICES}, f"one source per service: {sources}"
    assert {event_source("ingest"), event_source("matching"), event_source("subscription")} <= sources
