"""Scheduled dates: announced and their reminders planned when a custody change carries them; sent when due.

Sending, each round, in one database transaction: lock the due reminders (another replica skips them), decide their
notices from the current subscription and custody state, record them, mark the reminders sent, and write the
notices in one Kafka transaction committed before the database's. A crash before the Kafka commit aborts both; a
crash between the two commits leaves the reminders pending, and the next round sends the same notification ids
again, which delivery takes once. So a kill -9 loses no reminder and no victim hears one twice.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from zoneinfo import ZoneInfo

import asyncpg
from aiokafka import AIOKafkaProducer

from services.matching import domain, metrics
from services.matching.clock import Clock, system_clock
from services.matching.reminders import store
from services.matching.reminders.domain import (
    Reminder,
    ScheduledDates,
    announcements,
    dates_after,
    ended_reminders,
    reminders_for,
    scheduled_notices,
    still_due,
    wants,
)
from services.matching.store import agencies, notifications, subjects, subscriptions
from shared.db import Connection
from shared.envelope import KAFKA_HEADERS
from shared.events import (
    CustodyStatusChanged,
    NotificationKind,
    NotificationRequested,
    ReminderPolicy,
    SubscriptionState,
)
from shared.kafka.producer import create_producer
from shared.settings import KafkaSettings
from shared.topics import NOTIFICATION_REQUESTED

log = logging.getLogger(__name__)


async def announce_and_plan(
    connection: Connection,
    custody_event_id: str,
    change: CustodyStatusChanged,
    *,
    previous: ScheduledDates,
    subscriptions: list[SubscriptionState],
    now: datetime,
) -> dict[NotificationKind, list[NotificationRequested]]:
    """A new scheduled release or court date is announced and its reminders planned; a changed one replaces
    them; a release that happened first cancels the rest. Returns the announcements by kind."""
    ended = ended_reminders(change.status)
    if ended:
        await store.cancel_reminders(connection, change.agency_id, change.subject_id, ended)
    dates = dates_after(change.status, change.case)
    ours = [subscription for subscription in subscriptions if subscription.agency_id == change.agency_id]
    state = domain.KnownCustodyState(custody_event_id=custody_event_id, change=change)
    announced = {
        kind: [
            notice
            for subscription in ours
            for notice in scheduled_notices(kind, custody_event_id, state, subscription, now)
        ]
        for kind in announcements(previous, dates, now)
    }
    if dates != previous:
        await plan_reminders(connection, change, dates, ours, now)
    return announced


async def plan_reminders(
    connection: Connection,
    change: CustodyStatusChanged,
    dates: ScheduledDates,
    subscriptions: list[SubscriptionState],
    now: datetime,
) -> None:
    """Make the reminders of these subscriptions those the subject's ``dates`` and its agency's policy call for."""
    profile = await agencies.agency_profile(connection, change.agency_id)
    policy = profile.reminders if profile else ReminderPolicy()
    ids = [subscription.subscription_id for subscription in subscriptions]
    for kind in (NotificationKind.RELEASE_REMINDER, NotificationKind.COURT_REMINDER):
        planned = [
            reminder
            for subscription in subscriptions
            if wants(subscription, kind)
            for reminder in reminders_for(
                subscription.subscription_id,
                change.agency_id,
                change.subject_id,
                dates,
                policy,
                zone=ZoneInfo(subscription.timezone),
                quiet_start=subscription.quiet_hours_start,
                quiet_end=subscription.quiet_hours_end,
                now=now,
            )
            if reminder.kind is kind
        ]
        await store.replace_reminders(
            connection, ids, subject=(change.agency_id, change.subject_id), kind=kind, planned=planned, now=now
        )


class ReminderSender:
    def __init__(
        self,
        pool: asyncpg.Pool,
        kafka: KafkaSettings,
        producer: AIOKafkaProducer,
        *,
        clock: Clock = system_clock,
        batch_size: int = 200,
    ) -> None:
        self._pool = pool
        self._producer = producer
        self._topic = kafka.topic(NOTIFICATION_REQUESTED.name)
        self._clock = clock
        self._batch_size = batch_size

    async def send_due(self) -> int:
        """One round; returns how many reminders it decided."""
        now = self._clock()
        async with self._pool.acquire() as connection, connection.transaction():
            due = await store.due_reminders(connection, now, self._batch_size)
            if not due:
                return 0
            notices, cancelled = await self._decide(connection, due, now)
            sent = [reminder.reminder_id for reminder in due if reminder.reminder_id not in cancelled]
            await store.mark_reminders(connection, sent, "sent")
            await store.mark_reminders(connection, sorted(cancelled), "cancelled")
            async with self._producer.transaction():
                for notice, value in notices:
                    await self._producer.send(
                        self._topic, key=notice.notification_id.encode(), value=value, headers=KAFKA_HEADERS
                    )
        for notice, _ in notices:
            metrics.NOTIFICATIONS.labels(str(notice.kind), str(notice.channel), str(notice.urgency)).inc()
        log.info("reminders: %d due, %d notices, %d no longer due", len(due), len(notices), len(cancelled))
        return len(due)

    async def _decide(
        self, connection: Connection, due: list[Reminder], now: datetime
    ) -> tuple[list[tuple[NotificationRequested, bytes]], set[str]]:
        states = await subscriptions.load_subscriptions(connection, sorted({r.subscription_id for r in due}))
        notices: list[tuple[NotificationRequested, bytes]] = []
        cancelled: set[str] = set()
        for reminder in due:
            state = await subjects.known_state_of_subject(connection, reminder.agency_id, reminder.subject_id)
            subscription = states.get(reminder.subscription_id)
            if subscription is None or state is None or not still_due(reminder, state):
                cancelled.add(reminder.reminder_id)
                continue
            decided = scheduled_notices(reminder.kind, reminder.reminder_id, state, subscription, now)
            encoded = domain.encode_notices(decided, trace_id=reminder.reminder_id, at=now)
            about = domain.feed_notice_key(reminder.kind, reminder.reminder_id)
            notices += await notifications.record_notifications(connection, reminder.reminder_id, encoded, about)
        return notices, cancelled

    async def run_forever(self, interval_seconds: float) -> None:
        while True:
            decided = await self.send_due()
            if decided < self._batch_size:
                await asyncio.sleep(interval_seconds)


async def send_reminders_forever(
    pool: asyncpg.Pool, kafka: KafkaSettings, *, transactional_id: str, interval_seconds: float, clock: Clock
) -> None:
    """With a transactional producer of its own: the consumer's is inside a batch's transaction at any moment."""
    producer = await create_producer(
        kafka, transactional_id=transactional_id, allowed_topics=[NOTIFICATION_REQUESTED.name]
    )
    try:
        await ReminderSender(pool, kafka, producer, clock=clock).run_forever(interval_seconds)
    finally:
        await producer.stop()
