"""Sends the reminders that have come due (see :mod:`services.matching.schedule` for why matching holds them).

Each round, in one database transaction: lock the due reminders (another replica skips them), decide their
notices from the current subscription and custody state, record them, mark the reminders sent, and write the
notices in one Kafka transaction committed before the database's. A crash before the Kafka commit aborts both; a
crash between the two commits leaves the reminders pending, and the next round sends the same notification ids
again, which delivery takes once. So a kill -9 loses no reminder and no victim hears one twice.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

import asyncpg
from aiokafka import AIOKafkaProducer

from services.matching import domain, metrics, schedule, store
from services.matching.consumers import Clock, encode_notice, system_clock
from services.matching.schedule import Reminder
from shared.db import Connection
from shared.events import NotificationRequested
from shared.settings import KafkaSettings
from shared.topics import NOTIFICATION_REQUESTED

log = logging.getLogger(__name__)


def still_due(reminder: Reminder, state: domain.KnownCustodyState | None) -> bool:
    """A reminder goes only if the subject still has that very date ahead (a release first, a changed date or a
    seal would have cancelled it; this also covers one decided just before such a change committed)."""
    if state is None:
        return False
    dates = schedule.dates_after(state.change.status, state.change.case)
    return schedule.reminded_date(reminder.kind, dates) == reminder.scheduled_for


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
                    await self._producer.send(self._topic, key=notice.notification_id.encode(), value=value)
        for notice, _ in notices:
            metrics.NOTIFICATIONS.labels(str(notice.kind), str(notice.channel), str(notice.urgency)).inc()
        log.info("reminders: %d due, %d notices, %d no longer due", len(due), len(notices), len(cancelled))
        return len(due)

    async def _decide(
        self, connection: Connection, due: list[Reminder], now: datetime
    ) -> tuple[list[tuple[NotificationRequested, bytes]], set[str]]:
        subscriptions = await store.load_subscriptions(connection, sorted({r.subscription_id for r in due}))
        notices: list[tuple[NotificationRequested, bytes]] = []
        cancelled: set[str] = set()
        for reminder in due:
            state = await store.known_state_of_subject(connection, reminder.agency_id, reminder.subject_id)
            subscription = subscriptions.get(reminder.subscription_id)
            if subscription is None or state is None or not still_due(reminder, state):
                cancelled.add(reminder.reminder_id)
                continue
            decided = domain.scheduled_notices(reminder.kind, reminder.reminder_id, state, subscription, now)
            encoded = [(notice, encode_notice(notice, trace_id=reminder.reminder_id, at=now)) for notice in decided]
            about = domain.feed_notice_key(reminder.kind, reminder.reminder_id)
            notices += await store.record_notifications(connection, reminder.reminder_id, encoded, about)
        return notices, cancelled

    async def run_forever(self, interval_seconds: float) -> None:
        while True:
            decided = await self.send_due()
            if decided < self._batch_size:
                await asyncio.sleep(interval_seconds)
