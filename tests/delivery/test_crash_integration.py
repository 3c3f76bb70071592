"""The delivery process killed around the provider call: an SMS never reaches the provider twice (the taker asks
Twilio's message list first); an email is sent again with "a duplicate is possible" in its history."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest

from devservers.sinks.email import EmailSink
from devservers.sinks.sms import SmsSink, SmsSinkConfig
from devservers.sinks.voice import VoiceSink
from shared.settings import KafkaSettings
from shared.vocabulary import Channel
from tests.apps import ServiceProcess
from tests.delivery.harness import (
    FAST,
    PROVIDER_TIMEOUT,
    TEST_ACCOUNT_SID,
    TEST_AUTH_TOKEN,
    Delivery,
    delivery_settings,
    eventually,
)

pytestmark = pytest.mark.integration


def process_environment(
    *,
    database_url: str,
    kafka: KafkaSettings,
    sms_sink: SmsSink,
    email_sink: EmailSink,
    voice_sink: VoiceSink,
    marker: Path | None,
    hook: str = "DELIVERY_CRASH_AFTER_HANDOFF_MARKER",
) -> dict[str, str]:
    env = {
        "DELIVERY_ENVIRONMENT": "test",
        "DELIVERY_DATABASE_URL": database_url,
        "DELIVERY_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "DELIVERY_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
        # Nobody listens there: receipts after the crash come from reconciliation with the provider.
        "DELIVERY_PUBLIC_BASE_URL": "http://127.0.0.1:9",
        "DELIVERY_SMS_PROVIDERS": json.dumps(
            [
                {
                    "name": "local",
                    "account_sid": sms_sink.account_sid,
                    "auth_token": sms_sink.auth_token,
                    "from_number": "+15005550006",
                    "base_url": sms_sink.url,
                    "rate_per_second": 200,
                    "timeout": PROVIDER_TIMEOUT,
                }
            ]
        ),
        "DELIVERY_SMTP__HOST": email_sink.host,
        "DELIVERY_SMTP__PORT": str(email_sink.smtp_port),
        "DELIVERY_SMTP__TIMEOUT": str(PROVIDER_TIMEOUT),
        "DELIVERY_RECONCILE_AFTER_SECONDS": "1",
        "DELIVERY_VOICE_PROVIDER": json.dumps(
            {
                "name": "voice-local",
                "account_sid": voice_sink.account_sid,
                "auth_token": voice_sink.auth_token,
                "from_number": "+15005550007",
                "base_url": voice_sink.url,
                "rate_per_second": 200,
                "timeout": PROVIDER_TIMEOUT,
            }
        ),
    }
    if marker is not None:
        env[hook] = str(marker)
    env |= {f"DELIVERY_{name.upper()}": str(value) for name, value in FAST.items()}
    env["DELIVERY_SENDING_LEASE_SECONDS"] = str(2 * PROVIDER_TIMEOUT)
    return env


@asynccontextmanager
async def delivery_process(
    *,
    database_url: str,
    kafka: KafkaSettings,
    pool: asyncpg.Pool,
    log_dir: Path,
    marker: Path | None = None,
    hook: str = "DELIVERY_CRASH_AFTER_HANDOFF_MARKER",
    sms_config: SmsSinkConfig | None = None,
) -> AsyncIterator[tuple[Delivery, ServiceProcess]]:
    """Delivery as a process of its own (so it can be killed) with its sinks; stopped on the way out, the sinks'
    records kept for the checks."""
    sms_sink = SmsSink(account_sid=TEST_ACCOUNT_SID, auth_token=TEST_AUTH_TOKEN, config=sms_config)
    voice_sink = VoiceSink(account_sid=TEST_ACCOUNT_SID, auth_token=TEST_AUTH_TOKEN)
    async with sms_sink, EmailSink() as email, voice_sink:
        env = process_environment(
            database_url=database_url,
            kafka=kafka,
            sms_sink=sms_sink,
            email_sink=email,
            voice_sink=voice_sink,
            marker=marker,
            hook=hook,
        )
        process = ServiceProcess("services.delivery", env, port_variable="DELIVERY_HTTP_PORT", log_dir=log_dir)
        settings = delivery_settings(
            database_url=database_url, kafka=kafka, sms_sink=sms_sink, email_sink=email, port=process.port
        )
        process.start()
        try:
            async with httpx.AsyncClient(base_url=process.url) as http:
                yield Delivery(settings, kafka, pool, sms_sink, email, http, voice_sink), process
        finally:
            process.stop()


def notification_of(reference: str | None) -> str:
    """The notification id in an attempt reference ``<notification id>.a<number>``."""
    return (reference or "").rsplit(".a", 1)[0]


@pytest.mark.parametrize(
    "hook",
    ["DELIVERY_CRASH_AFTER_HANDOFF_MARKER", "DELIVERY_CRASH_BEFORE_CALL_MARKER"],
    ids=["after the hand-off", "before the provider call"],
)
async def test_killed_around_the_provider_call_sends_each_sms_once(
    database_url: str, kafka_settings: KafkaSettings, pool: asyncpg.Pool, tmp_path: Path, hook: str
) -> None:
    marker = tmp_path / "crashed"
    async with delivery_process(
        database_url=database_url, kafka=kafka_settings, pool=pool, log_dir=tmp_path, marker=marker, hook=hook
    ) as (delivery, process):
        assert not delivery.sms_sink.state.config.dedupe  # honest, as Twilio: a second POST is a second message
        ids, crashed_attempt = await crash_and_recover(delivery, process, marker, Channel.SMS)
    messages = delivery.sms_sink.messages()
    assert Counter(notification_of(m["reference"]) for m in messages) == dict.fromkeys(ids, 1), process.log_tail()
    recorded = await pool.fetchrow(
        "SELECT status, provider_message_id, body_fingerprint FROM attempts WHERE attempt_id = $1", crashed_attempt
    )
    assert recorded is not None
    assert recorded["status"] == "delivered"
    [message] = [m for m in messages if m["reference"] == crashed_attempt]
    assert recorded["provider_message_id"] == message["sid"]
    assert recorded["body_fingerprint"] == hashlib.sha256(message["body"].encode()).hexdigest()
    assert await pool.fetchval("SELECT count(*) FROM attempts") == 10  # the taker kept the stranded attempt


async def test_an_email_resent_after_a_crash_in_its_smtp_hand_off_says_a_duplicate_is_possible(
    database_url: str, kafka_settings: KafkaSettings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    marker = tmp_path / "crashed"
    async with delivery_process(
        database_url=database_url, kafka=kafka_settings, pool=pool, log_dir=tmp_path, marker=marker
    ) as (delivery, process):
        ids, crashed_attempt = await crash_and_recover(delivery, process, marker, Channel.EMAIL)
        exposed = (await delivery.http.get("/metrics")).text
    received = Counter(str(e["message_id"]).strip("<>").split("@")[0] for e in delivery.email_sink.emails())
    assert set(received) == {f"{notification_id}.a1" for notification_id in ids}  # each at least once
    assert received[crashed_attempt] == 2  # sent again, under the same Message-ID
    # Every email sent twice (others were in their SMTP hand-off at the crash too) says so in its history, and each
    # resend after a recorded SMTP call is counted, whether or not the first had gone through.
    noted = {
        row["attempt_id"]
        for row in await pool.fetch("SELECT attempt_id FROM attempts WHERE detail LIKE '%a duplicate is possible%'")
    }
    assert {reference for reference, count in received.items() if count > 1} <= noted
    assert f'cw_delivery_possible_duplicates_total{{channel="email"}} {float(len(noted))}' in exposed


async def crash_and_recover(
    delivery: Delivery, process: ServiceProcess, marker: Path, channel: Channel
) -> tuple[list[str], str]:
    """Ten notices; the process exits at its hook during one of them and is started again; all end well."""
    await process.wait_ready()
    requests = [delivery.request(channel=channel) for _ in range(10)]
    await delivery.publish(*requests)

    await eventually(lambda: asyncio.sleep(0, marker.exists()), check=bool, what="the crash")
    crashed_attempt = await asyncio.to_thread(marker.read_text)
    await asyncio.sleep(0.5)
    process.kill()  # already gone (os._exit); this just reaps it
    stranded = await delivery.pool.fetchval("SELECT status FROM attempts WHERE attempt_id = $1", crashed_attempt)
    assert stranded == "sending"  # never recorded: the crash window

    process.start()
    await process.wait_ready()
    ids = [r.notification_id for r in requests]
    outcome = "delivered" if channel is Channel.SMS else "sent"
    await eventually(
        lambda: delivery.pool.fetch("SELECT outcome FROM notifications WHERE notification_id = ANY($1::text[])", ids),
        check=lambda rows: len(rows) == 10 and all(row["outcome"] == outcome for row in rows),
        timeout=60,
        what=f"every notice {outcome} after the restart",
    )
    return ids, crashed_attempt


@pytest.mark.slow
async def test_killed_at_random_moments_while_100_notices_flow_each_is_delivered_exactly_once(
    database_url: str, kafka_settings: KafkaSettings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    chaos = random.Random(11)
    async with delivery_process(
        database_url=database_url,
        kafka=kafka_settings,
        pool=pool,
        log_dir=tmp_path,
        sms_config=SmsSinkConfig(failure_rate=0.2, seed=5),
    ) as (delivery, process):
        await process.wait_ready()
        requests = [delivery.request() for _ in range(100)]
        await delivery.publish(*requests)
        for _ in range(3):
            await asyncio.sleep(chaos.uniform(0.2, 1.5))
            process.kill()
            process.start()
            await process.wait_ready()
        ids = [r.notification_id for r in requests]
        await eventually(
            lambda: pool.fetch("SELECT outcome FROM notifications WHERE notification_id = ANY($1::text[])", ids),
            check=lambda rows: len(rows) == 100 and all(row["outcome"] == "delivered" for row in rows),
            timeout=120,
            what="all 100 delivered",
        )
    messages = delivery.sms_sink.messages()
    assert Counter(notification_of(m["reference"]) for m in messages) == dict.fromkeys(ids, 1), process.log_tail()
    assert all(m["status"] == "delivered" for m in messages)
