"""Scheduled releases against real Kafka and PostgreSQL: announced, reminded at the right local times as the test
moves matching's clock, replaced by a changed date, cancelled by a release that happens first."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.matching.app import create_app
from services.matching.settings import MatchingSettings
from shared.envelope import encode, new_event
from shared.events import (
    AgencyProfile,
    CaseInformation,
    CustodyStatusChanged,
    NotificationKind,
    NotificationRequested,
    ReminderPolicy,
)
from shared.settings import KafkaSettings
from shared.topics import AGENCY_PROFILE
from shared.vocabulary import CustodyStatus, Urgency
from tests.apps import running_app
from tests.kafkautil import produce_raw
from tests.matching.factories import AGENCY, change, custody_message, subscription, subscription_message
from tests.matching.helpers import matching_settings, publish_custody, publish_subscriptions, read_notices, wait_until

pytestmark = pytest.mark.integration

START = datetime(2030, 6, 1, 17, 0, tzinfo=UTC)  # 12:00 in Chicago (CDT)
RELEASE = datetime(2030, 6, 15, 20, 0, tzinfo=UTC)  # 15:00 in Chicago
MOVED = datetime(2030, 6, 20, 20, 0, tzinfo=UTC)


class MovableClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def with_release(
    status: CustodyStatus, release_at: datetime, sequence: int, *, case_only: bool = False
) -> CustodyStatusChanged:
    base = change("subject-1", status=status, sequence=sequence)
    return base.model_copy(
        update={
            "case": CaseInformation(scheduled_release_at=release_at),
            "case_information_only": case_only,
            "previous_status": CustodyStatus.IN_CUSTODY if sequence else None,
        }
    )


def running(settings: MatchingSettings, clock: MovableClock) -> AbstractAsyncContextManager[object]:
    return running_app(create_app(settings, clock))


def fresh(seen: set[str], notices: list[NotificationRequested]) -> list[NotificationRequested]:
    """The notices not read before (a topic's partitions come back in no global order)."""
    new = [notice for notice in notices if notice.notification_id not in seen]
    seen.update(notice.notification_id for notice in new)
    return new


async def has_rows(pool: asyncpg.Pool, sql: str) -> bool:
    return bool(await pool.fetchval(sql))


async def pending(pool: asyncpg.Pool) -> list[datetime]:
    rows = await pool.fetch("SELECT due_at FROM scheduled_notices WHERE state = 'pending' ORDER BY due_at")
    return [row["due_at"] for row in rows]


async def test_a_scheduled_release_is_announced_reminded_replaced_and_cancelled(
    database_url: str, pool: asyncpg.Pool, kafka_settings: KafkaSettings, unique: str
) -> None:
    clock = MovableClock(START)
    settings = matching_settings(database_url, kafka_settings, unique).model_copy(
        update={"reminder_interval_seconds": 0.1}
    )
    profile = AgencyProfile(
        agency_id=AGENCY, name="County", timezone="America/Chicago", reminders=ReminderPolicy(), updated_at=START
    )
    async with running(settings, clock):
        await produce_raw(
            kafka_settings,
            kafka_settings.topic(AGENCY_PROFILE.name),
            [(AGENCY.encode(), encode(new_event(profile, source="/tests")))],
        )
        await publish_subscriptions(kafka_settings, [subscription_message(subscription("sub-1"))])
        await wait_until(lambda: has_rows(pool, "SELECT count(*) FROM subscriptions"), what="the subscription")
        key, value, _ = custody_message(with_release(CustodyStatus.IN_CUSTODY, RELEASE, 0))
        await publish_custody(kafka_settings, [(key, value)])

        seen: set[str] = set()
        first = fresh(seen, await read_notices(kafka_settings, 4))
        announced = [n for n in first if n.kind is NotificationKind.RELEASE_SCHEDULED]
        assert len(announced) == 2
        assert all(n.scheduled_for == RELEASE and n.urgency is Urgency.INFORMATIONAL for n in announced)
        chicago = [(due.astimezone(UTC) - timedelta(hours=5)).strftime("%m-%d %H:%M") for due in await pending(pool)]
        assert chicago == ["06-01 15:00", "06-14 15:00", "06-15 08:00"]  # 14 days, 1 day, the morning of

        clock.now = datetime(2030, 6, 1, 20, 0, 1, tzinfo=UTC)
        reminded = fresh(seen, await read_notices(kafka_settings, 6))
        assert {(n.kind, n.scheduled_for) for n in reminded} == {(NotificationKind.RELEASE_REMINDER, RELEASE)}

        key, value, _ = custody_message(with_release(CustodyStatus.IN_CUSTODY, MOVED, 1, case_only=True))
        await publish_custody(kafka_settings, [(key, value)])
        replaced = fresh(seen, await read_notices(kafka_settings, 8))
        assert {(n.kind, n.scheduled_for) for n in replaced} == {(NotificationKind.RELEASE_SCHEDULED, MOVED)}
        assert len(await pending(pool)) == 3  # 06-06, 06-19 and the morning of 06-20, none of the old date

        clock.now = datetime(2030, 6, 19, 20, 0, 1, tzinfo=UTC)
        due = fresh(seen, await read_notices(kafka_settings, 12))
        assert {(n.kind, n.scheduled_for) for n in due} == {(NotificationKind.RELEASE_REMINDER, MOVED)}

        key, value, _ = custody_message(with_release(CustodyStatus.RELEASED, MOVED, 2))
        await publish_custody(kafka_settings, [(key, value)])
        released = fresh(seen, await read_notices(kafka_settings, 14))
        assert {n.kind for n in released} == {NotificationKind.STATUS_CHANGE}
        assert await pending(pool) == []
        clock.now = MOVED + timedelta(days=1)
        await read_notices(kafka_settings, 14, settle=2.0)  # the morning-of reminder never goes
        states = await pool.fetch("SELECT state, count(*) FROM scheduled_notices GROUP BY state ORDER BY state")
        assert {row["state"]: row["count"] for row in states} == {"cancelled": 3, "sent": 3}
