"""Delivery's consumer stores a whole Kafka batch of requests in one transaction; one record the database refuses
still goes to retry and the dead-letter topic alone, and every other notice of its batch is sent exactly once."""

from __future__ import annotations

import asyncpg
import pytest

from shared.envelope import decode
from shared.events import NotificationRequested
from shared.settings import KafkaSettings
from tests.delivery.harness import eventually, running_delivery
from tests.kafkautil import read_topic

pytestmark = pytest.mark.integration


async def test_a_record_the_database_refuses_fails_alone_and_the_rest_of_its_batch_is_sent_once(
    database_url: str, kafka_settings: KafkaSettings, pool: asyncpg.Pool
) -> None:
    async with running_delivery(database_url=database_url, kafka=kafka_settings, pool=pool) as delivery:
        good = [delivery.request() for _ in range(30)]
        # PostgreSQL refuses NUL characters in text: this one row makes the batch's single INSERT fail.
        refused = delivery.request().model_copy(update={"contact_masked": "+1 *** ***\x00 12"})
        await delivery.publish(*good[:15], refused, *good[15:])
        ids = [request.notification_id for request in good]

        async def outcomes() -> dict[str, str | None]:
            rows = await pool.fetch(
                "SELECT notification_id, outcome FROM notifications WHERE notification_id = ANY($1::text[])", ids
            )
            return {row["notification_id"]: row["outcome"] for row in rows}

        await eventually(
            outcomes,
            check=lambda found: len(found) == len(ids) and all(v == "delivered" for v in found.values()),
            timeout=60,
            what="every good notice delivered",
        )
        dead = await read_topic(
            kafka_settings, kafka_settings.topic("dlq.delivery"), until=lambda records: len(records) >= 1, timeout=60
        )
        assert {record.key for record in dead} == {refused.notification_id.encode()}
        parked = decode(dead[0].value).data
        assert isinstance(parked, NotificationRequested)
        assert parked.notification_id == refused.notification_id
        assert await delivery.outcome(refused.notification_id) is None, "never stored"
        for request in good:
            assert len(delivery.sms_for(request.notification_id)) == 1, request.notification_id
        stored = await pool.fetchval("SELECT count(*) FROM notifications")
        assert stored == len(good)
