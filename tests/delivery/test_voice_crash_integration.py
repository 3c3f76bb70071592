"""Delivery killed around a call: the victim's phone never rings twice for one attempt (the taker asks Twilio's call
list before calling again), as for SMS."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import asyncpg
import pytest

from shared.settings import KafkaSettings
from shared.vocabulary import Channel
from tests.delivery.harness import eventually
from tests.delivery.test_crash_integration import delivery_process, notification_of

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "hook",
    ["DELIVERY_CRASH_AFTER_HANDOFF_MARKER", "DELIVERY_CRASH_BEFORE_CALL_MARKER"],
    ids=["after the call was placed", "before the call"],
)
async def test_killed_around_the_call_places_each_call_once(
    database_url: str, kafka_settings: KafkaSettings, pool: asyncpg.Pool, tmp_path: Path, hook: str
) -> None:
    marker = tmp_path / "crashed"
    async with delivery_process(
        database_url=database_url, kafka=kafka_settings, pool=pool, log_dir=tmp_path, marker=marker, hook=hook
    ) as (delivery, process):
        await process.wait_ready()
        requests = [delivery.request(channel=Channel.VOICE) for _ in range(10)]
        await delivery.publish(*requests)
        await eventually(lambda: asyncio.sleep(0, marker.exists()), check=bool, what="the crash")
        crashed_attempt = await asyncio.to_thread(marker.read_text)
        await asyncio.sleep(0.5)
        process.kill()
        assert await pool.fetchval("SELECT status FROM attempts WHERE attempt_id = $1", crashed_attempt) == "sending"

        process.start()
        await process.wait_ready()
        ids = [request.notification_id for request in requests]
        await eventually(
            lambda: pool.fetch(
                "SELECT a.provider_message_id FROM attempts a JOIN notifications n USING (notification_id)"
                " WHERE n.notification_id = ANY($1::text[]) AND n.in_flight_attempt_id IS NULL",
                ids,
            ),
            check=lambda rows: len(rows) == 10 and all(row["provider_message_id"] for row in rows),
            timeout=60,
            what="every call handed off and recorded",
        )
    calls = delivery.voice_sink.calls()
    assert Counter(notification_of(call["reference"]) for call in calls) == dict.fromkeys(ids, 1), process.log_tail()
    [crashed_call] = [call for call in calls if call["reference"] == crashed_attempt]
    recorded = await pool.fetchval("SELECT provider_message_id FROM attempts WHERE attempt_id = $1", crashed_attempt)
    assert recorded == crashed_call["sid"]
    assert await pool.fetchval("SELECT count(*) FROM attempts WHERE notification_id = ANY($1::text[])", ids) == 10
