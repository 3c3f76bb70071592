"""A consumer whose database stops accepting connections waits: nothing goes to the retry or dead-letter topics,
``degraded`` says why, and once the database is back every event is applied exactly once, in order per partition.

The outage is real: ``ALTER DATABASE … ALLOW_CONNECTIONS false`` and every backend terminated, as a failover or a
restart does it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import pytest
from aiokafka import ConsumerRecord

from shared.db import Connection, apply_migrations, create_pool
from shared.envelope import CloudEvent, encode
from shared.events import Payload
from shared.idempotency import apply_once
from shared.kafka.consumer import ConsumerRunner, DecodedRecord
from shared.kafka.producer import create_producer
from shared.settings import KafkaSettings
from shared.topics import CUSTODY_STATUS_CHANGED, consumer_group_topics, dead_letter_topic, ensure_topics, retry_topic
from tests.dbutil import refuse_connections
from tests.kafkautil import produce_raw, read_topic, running
from tests.shared.test_plumbing_integration import custody_event

pytestmark = pytest.mark.integration

EVENTS = 30


async def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def topic_is_empty(settings: KafkaSettings, topic: str) -> bool:
    try:
        await read_topic(settings, topic, until=lambda records: len(records) > 0, timeout=3)
    except AssertionError:
        return True
    return False


@pytest.mark.parametrize("mode", ["record by record", "transactional batches"])
async def test_a_database_outage_stalls_the_consumer_and_loses_nothing(
    mode: str, kafka_settings: KafkaSettings, postgres_admin_dsn: str, database_url: str, unique: str
) -> None:
    group = f"outage-{unique}"
    await ensure_topics(kafka_settings, [CUSTODY_STATUS_CHANGED, *consumer_group_topics(group)])
    database = database_url.rsplit("/", 1)[1].split("?", maxsplit=1)[0]
    pool = await create_pool(database_url, min_size=1, max_size=4)
    await pool.execute("CREATE TABLE applied (event_id text PRIMARY KEY, seq bigserial)")
    await apply_migrations(pool, ["shared"])
    applied_count = 0

    async def apply(event: CloudEvent[Payload]) -> None:
        nonlocal applied_count

        async def insert(connection: Connection) -> None:
            await connection.execute("INSERT INTO applied (event_id) VALUES ($1)", event.id)

        if await apply_once(pool, group, event.id, insert):
            applied_count += 1

    async def handler(event: CloudEvent[Payload], _: ConsumerRecord[bytes, bytes]) -> None:
        await apply(event)

    async def batch_handler(batch: Sequence[DecodedRecord]) -> None:
        for event, _ in batch:
            await apply(event)

    transactional = mode == "transactional batches"
    producer = await create_producer(kafka_settings, transactional_id=f"{group}-tx" if transactional else None)
    runner = ConsumerRunner(
        kafka_settings,
        group_id=group,
        topics=[CUSTODY_STATUS_CHANGED],
        handler=handler,
        producer=producer,
        transactional=transactional,
        batch_handler=batch_handler if transactional else None,
    )
    events = [custody_event(n, subject=f"s-{n % 3}") for n in range(EVENTS)]
    topic = kafka_settings.topic(CUSTODY_STATUS_CHANGED.name)
    keyed: list[tuple[bytes | None, bytes | None]] = [(f"k{n % 3}".encode(), encode(e)) for n, e in enumerate(events)]
    try:
        async with running(runner):
            await produce_raw(kafka_settings, topic, keyed[:5])
            await wait_until(lambda: applied_count == 5)

            await refuse_connections(postgres_admin_dsn, database, refuse=True)
            await produce_raw(kafka_settings, topic, keyed[5:])
            await wait_until(lambda: runner.degraded is not None, timeout=30)
            assert runner.degraded == "database unavailable"
            await asyncio.sleep(6)  # several backoff rounds while the database stays away
            assert runner.degraded is not None, "still waiting, not given up"
            assert await topic_is_empty(kafka_settings, kafka_settings.topic(retry_topic(group)))

            await refuse_connections(postgres_admin_dsn, database, refuse=False)
            await wait_until(lambda: applied_count == EVENTS, timeout=60)
            await wait_until(lambda: runner.degraded is None, timeout=30)
        rows = await pool.fetch("SELECT event_id FROM applied ORDER BY seq")
        assert sorted(row["event_id"] for row in rows) == sorted(event.id for event in events)
        assert await topic_is_empty(kafka_settings, kafka_settings.topic(retry_topic(group)))
        assert await topic_is_empty(kafka_settings, kafka_settings.topic(dead_letter_topic(group)))
    finally:
        await refuse_connections(postgres_admin_dsn, database, refuse=False)
        await pool.close()
