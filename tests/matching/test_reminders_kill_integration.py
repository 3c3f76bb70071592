"""The service that holds reminders (matching) killed -9 while reminders go out: restarted, it loses none and
gives none a second notification id; the reminders are in its database, not in memory."""

from __future__ import annotations

import asyncio
import collections
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from services.matching.reminders.domain import dates_after, reminders_for, scheduled_notice_id
from shared.envelope import encode, new_event
from shared.events import AgencyProfile, CaseInformation, NotificationKind, ReminderPolicy, SubjectIdentifier
from shared.settings import KafkaSettings
from shared.topics import AGENCY_PROFILE
from shared.vocabulary import Channel, CustodyStatus, IdentifierKind
from tests.apps import ServiceProcess
from tests.kafkautil import produce_raw
from tests.matching.factories import AGENCY, change, contact, custody_message, subscription, subscription_message
from tests.matching.helpers import (
    matching_settings,
    process_env,
    publish_custody,
    publish_subscriptions,
    read_notices_until,
    wait_until,
)

pytestmark = pytest.mark.integration

SUBSCRIBERS = 600
POLICY = ReminderPolicy(release_days_before=[14], release_morning_of=False)
CASE = SubjectIdentifier(kind=IdentifierKind.BOOKING_NUMBER, value="B-1")


async def count(pool: asyncpg.Pool, sql: str) -> int:
    try:
        return int(await pool.fetchval(sql))
    except asyncpg.UndefinedTableError:
        return 0


async def test_killed_while_reminders_go_out_none_is_lost_none_gets_a_second_id(
    database_url: str, pool: asyncpg.Pool, kafka_settings: KafkaSettings, unique: str, tmp_path: Path
) -> None:
    settings = matching_settings(database_url, kafka_settings, unique)
    env = process_env(settings) | {"MATCHING_REMINDER_INTERVAL_SECONDS": "0.05"}

    def process() -> ServiceProcess:
        return ServiceProcess("services.matching", env, port_variable="MATCHING_HTTP_PORT", log_dir=tmp_path)

    states = [
        subscription(f"sub-{n:04d}", identifier=CASE, contacts=[contact(Channel.SMS, tag=str(n))]).model_copy(
            update={"quiet_hours_start": datetime.min.time(), "quiet_hours_end": datetime.min.time()}
        )
        for n in range(SUBSCRIBERS)
    ]
    profile = AgencyProfile(
        agency_id=AGENCY, name="County", timezone="America/Chicago", reminders=POLICY, updated_at=datetime.now(UTC)
    )
    first = process()
    first.start()
    try:
        await first.wait_ready()
        await produce_raw(
            kafka_settings,
            kafka_settings.topic(AGENCY_PROFILE.name),
            [(AGENCY.encode(), encode(new_event(profile, source="/tests")))],
        )
        await publish_subscriptions(kafka_settings, [subscription_message(state) for state in states])
        await wait_until(lambda: has(pool, SUBSCRIBERS), timeout=60, what="the subscriptions")
        release_at = (datetime.now(UTC) + timedelta(days=14, seconds=15)).replace(microsecond=0)
        booked = change("subject-1", status=CustodyStatus.IN_CUSTODY, identifiers=[CASE]).model_copy(
            update={"case": CaseInformation(scheduled_release_at=release_at), "previous_status": None}
        )
        key, value, _ = custody_message(booked)
        await publish_custody(kafka_settings, [(key, value)])
        planned = "SELECT count(*) FROM scheduled_notices WHERE state = 'pending'"
        await wait_until(lambda: reached(pool, planned, SUBSCRIBERS), timeout=60, what="the reminders planned")

        # Kill the moment the first round of reminders committed: the next rounds are being decided and sent.
        sent = "SELECT count(*) FROM scheduled_notices WHERE state = 'sent'"
        deadline = time.monotonic() + 60
        while await count(pool, sent) == 0:
            assert time.monotonic() < deadline, "no reminder came due"
            await asyncio.sleep(0.002)
        first.kill()
        at_kill = await count(pool, sent)
        assert at_kill < SUBSCRIBERS, "every reminder went before the kill; nothing was tested"

        restarted = process()
        restarted.start()
        try:
            await restarted.wait_ready()
            await wait_until(lambda: reached(pool, sent, SUBSCRIBERS), timeout=60, what="every reminder sent")
            expected = {
                scheduled_notice_id(
                    reminder.reminder_id, NotificationKind.RELEASE_REMINDER, state.subscription_id, Channel.SMS
                )
                for state in states
                for reminder in reminders_for(
                    state.subscription_id,
                    AGENCY,
                    "subject-1",
                    dates_after(CustodyStatus.IN_CUSTODY, booked.case),
                    POLICY,
                    zone=ZoneInfo(state.timezone),
                    quiet_start=state.quiet_hours_start,
                    quiet_end=state.quiet_hours_end,
                    now=release_at - timedelta(days=14, seconds=10),
                )
            }
            assert len(expected) == SUBSCRIBERS
            notices = await read_notices_until(kafka_settings, 3 * SUBSCRIBERS, timeout=90)
            reminders = collections.Counter(
                n.notification_id for n in notices if n.kind is NotificationKind.RELEASE_REMINDER
            )
            assert set(reminders) == expected
            copies = sum(reminders.values()) - len(reminders)
            # Only a kill between the Kafka commit and the database's repeats a round, with the same ids (delivery
            # takes each id once); here the kill came after a database commit.
            assert copies == 0, f"{copies} reminders were written twice"
            assert await count(pool, "SELECT count(*) FROM scheduled_notices WHERE state = 'pending'") == 0
        finally:
            restarted.stop()
    finally:
        first.stop()


async def has(pool: asyncpg.Pool, subscriptions: int) -> bool:
    return await count(pool, "SELECT count(*) FROM subscriptions") >= subscriptions


async def reached(pool: asyncpg.Pool, sql: str, n: int) -> bool:
    return await count(pool, sql) >= n
