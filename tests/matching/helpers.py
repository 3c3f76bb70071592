"""What the matching integration tests share: settings for a test's own topics and database, readers, waits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiokafka import ConsumerRecord

from services.matching.settings import MatchingSettings
from shared.db import apply_migrations, create_pool
from shared.envelope import decode
from shared.events import NotificationRequested
from shared.kafka.producer import create_producer
from shared.settings import KafkaSettings
from shared.topics import (
    CUSTODY_STATUS_CHANGED,
    NOTIFICATION_REQUESTED,
    SUBJECT_SEALED,
    SUBSCRIPTION_STATE,
    dead_letter_topic,
)
from tests.kafkautil import produce_raw, read_exactly, read_topic


def matching_settings(
    database_url: str, kafka: KafkaSettings, unique: str, instance: str = "0", batch_size: int = 500
) -> MatchingSettings:
    return MatchingSettings(
        environment="test",
        database_url=database_url,
        database_pool_max=4,
        kafka=kafka,
        instance_id=f"{unique}-{instance}",
        consumer_group=f"matching-{unique}",
        batch_size=batch_size,
    )


def process_env(settings: MatchingSettings) -> dict[str, str]:
    """The same settings as environment variables, for ``python -m services.matching``."""
    return {
        "MATCHING_ENVIRONMENT": settings.environment,
        "MATCHING_DATABASE_URL": settings.database_url,
        "MATCHING_DATABASE_POOL_MAX": str(settings.database_pool_max),
        "MATCHING_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "MATCHING_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
        "MATCHING_KAFKA__CLIENT_ID": settings.kafka.client_id,
        "MATCHING_INSTANCE_ID": settings.instance_id,
        "MATCHING_CONSUMER_GROUP": settings.consumer_group,
        "MATCHING_BATCH_SIZE": str(settings.batch_size),
    }


async def publish_subscriptions(kafka: KafkaSettings, messages: list[tuple[bytes, bytes]]) -> None:
    await produce_raw(kafka, kafka.topic(SUBSCRIPTION_STATE.name), list(messages))


async def publish_custody(kafka: KafkaSettings, messages: list[tuple[bytes, bytes]]) -> None:
    await produce_raw(kafka, kafka.topic(CUSTODY_STATUS_CHANGED.name), list(messages))


async def publish_sealed(kafka: KafkaSettings, messages: list[tuple[bytes, bytes]]) -> None:
    await produce_raw(kafka, kafka.topic(SUBJECT_SEALED.name), list(messages))


def notices_of(records: list[ConsumerRecord[bytes, bytes]]) -> list[NotificationRequested]:
    notices = []
    for record in records:
        event = decode(record.value)
        assert isinstance(event.data, NotificationRequested)
        assert event.id == event.data.notification_id
        assert record.key == event.data.notification_id.encode()
        notices.append(event.data)
    return notices


async def read_notices(kafka: KafkaSettings, count: int, *, settle: float = 1.5) -> list[NotificationRequested]:
    """Exactly ``count`` committed notification requests (fails if fewer arrive or more follow)."""
    records = await read_exactly(kafka, kafka.topic(NOTIFICATION_REQUESTED.name), count, settle=settle, timeout=90)
    assert len(records) == count, f"expected {count} notification requests, got {len(records)}"
    return notices_of(records)


async def read_notices_until(kafka: KafkaSettings, count: int, timeout: float = 120) -> list[NotificationRequested]:
    records = await read_topic(
        kafka, kafka.topic(NOTIFICATION_REQUESTED.name), until=lambda r: len(r) >= count, timeout=timeout
    )
    return notices_of(records)


async def wait_until(condition: Callable[[], Awaitable[bool]], *, timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.1)


# Dead letters, and replaying them as an operator does from the dashboard (services.ops.pipeline)


async def dead_letters(kafka: KafkaSettings, group: str, count: int) -> list[ConsumerRecord[bytes, bytes]]:
    """The first ``count`` dead letters of a consumer group (waits for them)."""
    return await read_topic(
        kafka, kafka.topic(dead_letter_topic(group)), until=lambda records: len(records) >= count, timeout=90
    )


async def dead_letter_again(kafka: KafkaSettings, letter: ConsumerRecord[bytes, bytes]) -> None:
    """A second dead letter of the same event (it failed again after a replay, or an upstream copy did)."""
    producer = await create_producer(kafka)
    try:
        await producer.send_and_wait(letter.topic, value=letter.value, key=letter.key, headers=list(letter.headers))
    finally:
        await producer.stop()


@asynccontextmanager
async def ops_replays(
    postgres_admin_dsn: str, unique: str, kafka: KafkaSettings, group: str
) -> AsyncIterator[Callable[[ConsumerRecord[bytes, bytes]], Awaitable[str]]]:
    """Replay a dead letter of ``group`` through ops' own replay (its database, claims and audit)."""
    from services.ops.pipeline.flows import PipelineMonitor
    from services.ops.settings import OpsSettings
    from tests import servers

    database_url = await servers.create_database(postgres_admin_dsn, f"ops_{unique}")
    settings = OpsSettings(environment="test", database_url=database_url, kafka=kafka, consumer_groups=[group])
    pool = await create_pool(database_url, min_size=1, max_size=2)
    producer = await create_producer(kafka)
    try:
        await apply_migrations(pool, ["shared", "services.ops"])
        monitor = PipelineMonitor(settings)

        async def replay(letter: ConsumerRecord[bytes, bytes]) -> str:
            return await monitor.replay(
                pool,
                producer,
                dlq_topic=dead_letter_topic(group),
                partition=letter.partition,
                offset=letter.offset,
                username="admin",
            )

        yield replay
    finally:
        await producer.stop()
        await pool.close()
