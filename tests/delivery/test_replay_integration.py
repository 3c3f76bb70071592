"""An operator's replay of a parked notice makes one new attempt; a redelivery of any kind changes nothing."""

from __future__ import annotations

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord

from devservers.sinks.sms import SmsSinkConfig
from services.delivery.consumers import H_REPLAYED_FROM
from services.delivery.domain import SUBSCRIPTION_CANCELLED
from shared.events import NotificationRequested
from shared.settings import KafkaSettings
from shared.topics import NOTIFICATION_REQUESTED
from tests.delivery.harness import Delivery, eventually, running_delivery
from tests.delivery.test_stop_integration import publish_state, state_for, wait_for_version
from tests.kafkautil import read_topic

pytestmark = pytest.mark.integration


async def republish(delivery: Delivery, record: ConsumerRecord[bytes, bytes], *, replayed_from: str | None) -> None:
    """What the ops dashboard's replay sends (services/ops/pipeline.py): the dead letter's key and value, its
    ``cw-`` headers dropped, ``cw-replayed-from`` added; or, without ``replayed_from``, a plain redelivery."""
    headers = [(key, value) for key, value in record.headers or () if not key.startswith("cw-")]
    if replayed_from is not None:
        headers.append((H_REPLAYED_FROM, replayed_from.encode()))
    producer = AIOKafkaProducer(**delivery.kafka.producer_kwargs())
    await producer.start()
    try:
        topic = delivery.kafka.topic(NOTIFICATION_REQUESTED.name)
        await producer.send_and_wait(topic, value=record.value, key=record.key, headers=headers)
    finally:
        await producer.stop()


async def park_one(delivery: Delivery) -> tuple[NotificationRequested, ConsumerRecord[bytes, bytes]]:
    """A notice delivery gives up on (the sink fails every send), and its dead letter."""
    parked = delivery.request()
    await delivery.publish(parked)
    dlq = delivery.kafka.topic("dlq.delivery")
    [letter] = await read_topic(delivery.kafka, dlq, until=lambda records: len(records) >= 1)
    return parked, letter


async def test_a_replayed_parked_notice_reaches_the_provider_once_and_its_history_shows_every_attempt(
    database_url: str, kafka_settings: KafkaSettings, pool: asyncpg.Pool
) -> None:
    async with running_delivery(
        database_url=database_url,
        kafka=kafka_settings,
        pool=pool,
        sms_config=SmsSinkConfig(failure_rate=1.0),
        retry_max_attempts=2,
    ) as delivery:
        parked, letter = await park_one(delivery)
        assert letter.key == parked.notification_id.encode()
        delivery.sms_sink.configure(failure_rate=0.0)  # the provider is healthy again

        await republish(delivery, letter, replayed_from=f"dlq.delivery:{letter.partition}:{letter.offset}")
        await eventually(lambda: delivery.outcome(parked.notification_id), check=lambda o: o == "delivered")

        # Kafka delivers the replayed record again, and the original event once more: neither sends anything. A
        # later notice on the same partition (same key) shows when both were consumed.
        await republish(delivery, letter, replayed_from=f"dlq.delivery:{letter.partition}:{letter.offset}")
        await republish(delivery, letter, replayed_from=None)
        sentinel = delivery.request()
        await delivery.publish_events(NOTIFICATION_REQUESTED.name, [(parked.notification_id, sentinel)])
        await eventually(lambda: delivery.outcome(sentinel.notification_id), check=lambda o: o == "delivered")

        assert len(delivery.sms_for(parked.notification_id)) == 1
        history = await delivery.history(parked.notification_id)
        attempts = [(a["purpose"], a["status"]) for a in history["attempts"]]
        assert attempts == [("first", "temporary-failure"), ("retry", "temporary-failure"), ("replay", "delivered")]
        assert history["status"] == "delivered"


async def test_a_replay_for_a_subscriber_who_cancelled_since_sends_nothing(
    database_url: str, kafka_settings: KafkaSettings, pool: asyncpg.Pool
) -> None:
    async with running_delivery(
        database_url=database_url,
        kafka=kafka_settings,
        pool=pool,
        sms_config=SmsSinkConfig(failure_rate=1.0),
        retry_max_attempts=1,
    ) as delivery:
        parked, letter = await park_one(delivery)
        await publish_state(delivery, state_for(parked, version=1, status="cancelled"))
        await wait_for_version(delivery, parked.subscription_id, 1)
        delivery.sms_sink.configure(failure_rate=0.0)

        await republish(delivery, letter, replayed_from=f"dlq.delivery:{letter.partition}:{letter.offset}")
        await eventually(lambda: delivery.outcome(parked.notification_id), check=lambda o: o == "stopped")
        history = await delivery.history(parked.notification_id)
        assert history["stop_reason"] == SUBSCRIPTION_CANCELLED
        assert delivery.sms_for(parked.notification_id) == []
