"""A notice that cannot be sent after matching committed its effect fails the Kafka transaction, not the event:
the event is never retried or dead-lettered as if unapplied (a replay would then find it applied and send nothing),
and reading it again at the same position re-sends what it recorded."""

from __future__ import annotations

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import MessageSizeTooLargeError

from services.matching.consumers import Matcher
from services.matching.store import notifications, subscriptions
from shared.db import apply_migrations
from shared.envelope import decode
from shared.settings import KafkaSettings
from shared.topics import NOTIFICATION_REQUESTED, ensure_topics
from tests.matching.factories import change, custody_message, subscription
from tests.matching.helpers import read_notices

pytestmark = pytest.mark.integration


def consumed(value: bytes, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="custody.status-changed.v1",
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=b"agency-a/subject-1",
        value=value,
        checksum=None,
        serialized_key_size=18,
        serialized_value_size=len(value),
        headers=(),
    )


async def transactional_producer(kafka: KafkaSettings, transactional_id: str, **options: int) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(**kafka.producer_kwargs(transactional_id), **options)
    await producer.start()
    return producer


async def test_a_send_failing_after_the_commit_aborts_the_batch_and_the_event_re_sends_when_read_again(
    pool: asyncpg.Pool, kafka_settings: KafkaSettings, unique: str
) -> None:
    await apply_migrations(pool, ["shared", "services.matching"])
    await ensure_topics(kafka_settings, [NOTIFICATION_REQUESTED])
    async with pool.acquire() as connection:
        await subscriptions.save_subscription(connection, subscription("sub-1"))
    _, value, event_id = custody_message(change())
    record = consumed(value, offset=7)

    # Every notice is larger than this producer may send: the send fails for a reason that is no outage.
    refusing = await transactional_producer(kafka_settings, f"matching-{unique}", max_request_size=200)
    try:
        refusing_matcher = Matcher(pool, kafka_settings, refusing)
        await refusing.begin_transaction()
        await refusing_matcher.handle(decode(value), record)  # the event itself does not fail: no retry, no DLQ
        with pytest.raises(MessageSizeTooLargeError):
            await refusing_matcher.wait_for_sends()  # the batch's commit step fails instead
        await refusing.abort_transaction()
    finally:
        await refusing.stop()
    async with pool.acquire() as connection:
        assert len(await notifications.notifications_caused_by(connection, event_id)) == 2, "the effect was committed"

    producer = await transactional_producer(kafka_settings, f"matching-{unique}")
    try:
        matcher = Matcher(pool, kafka_settings, producer)
        async with producer.transaction():
            await matcher.handle(decode(value), record)  # the same message at the same position, read again
            await matcher.wait_for_sends()
    finally:
        await producer.stop()
    notices = await read_notices(kafka_settings, 2)
    assert {notice.subscription_id for notice in notices} == {"sub-1"}
