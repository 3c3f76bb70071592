"""Matching's Kafka handler: each consumed event → domain decision → its own store → notification requests.

Every event is applied once (``handled_events``) in one database transaction that also records the notification
requests it caused, encoded byte for byte. The requests are then sent through the transactional producer, inside
the batch's Kafka transaction. If that transaction aborts (a crash, a failed send), the batch is read again: the
database already holds the effect, so the same message at the same position re-sends exactly what it recorded,
and a copy of the event at another position (an upstream duplicate) sends nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from aiokafka import AIOKafkaProducer, ConsumerRecord

from services.matching import domain, metrics, schedule, store
from services.matching.store import SourcePosition, StoredNotification
from shared.db import Connection
from shared.events import (
    KAFKA_HEADERS,
    AgencyProfile,
    CloudEvent,
    CustodyStatusChanged,
    FeedSilence,
    NotificationKind,
    NotificationRequested,
    Payload,
    ReminderPolicy,
    SubjectSealed,
    SubscriptionState,
    encode,
    event_source,
    new_event,
)
from shared.failures import transient_dependency
from shared.kafka import H_ORIGINAL_OFFSET, H_ORIGINAL_PARTITION, H_ORIGINAL_TOPIC, DecodedRecord, header
from shared.settings import KafkaSettings
from shared.topics import NOTIFICATION_REQUESTED
from shared.vocabulary import CustodyStatus

log = logging.getLogger(__name__)

EVENT_SOURCE = event_source("matching")

Clock = Callable[[], datetime]
"""What time it is; tests pass one they move, so reminders come due without waiting."""


def system_clock() -> datetime:
    return datetime.now(UTC)


def file_clock(path: Path) -> Clock:
    """The time written in ``path`` (ISO 8601), else the system's: read each time, so a test can move it."""

    def now() -> datetime:
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            return system_clock()
        return datetime.fromisoformat(text) if text else system_clock()

    return now


STALE_CHANGE = "stale_change"
BOOKED = frozenset({CustodyStatus.IN_CUSTODY, CustodyStatus.RETURNED_TO_CUSTODY})


@dataclass
class Outcome:
    """What applying one event decided, for metrics once its transaction committed."""

    encoded: list[tuple[NotificationRequested, bytes]] = field(default_factory=list)
    custody_change: bool = False
    matched: bool = False
    skipped: str | None = None

    @property
    def notices(self) -> list[NotificationRequested]:
        return [notice for notice, _ in self.encoded]


@dataclass
class Decision:
    """An event's outcome and the notification requests to send for it (those it recorded, or, on a replay of
    the same message, those recorded the first time)."""

    event_id: str
    outcome: Outcome
    to_send: list[StoredNotification]
    replay: bool = False
    duplicate: bool = False


def source_position(record: ConsumerRecord[bytes, bytes]) -> SourcePosition:
    """The position the event was first read at, also when it comes back through the retry topic."""
    topic = header(record, H_ORIGINAL_TOPIC)
    partition = header(record, H_ORIGINAL_PARTITION)
    offset = header(record, H_ORIGINAL_OFFSET)
    if topic is not None and partition is not None and offset is not None:
        return SourcePosition(topic, int(partition), int(offset))
    return SourcePosition(record.topic, record.partition, record.offset)


def encode_notice(notice: NotificationRequested, *, trace_id: str, at: datetime) -> bytes:
    """The event id is the notification id: a consumer can de-duplicate on either."""
    event = new_event(
        notice,
        source=EVENT_SOURCE,
        subject=notice.notification_id,
        event_id=notice.notification_id,
        trace_id=trace_id,
        at=at,
    )
    return encode(event)


class Matcher:
    """Handles ``subscription.state``, ``custody.status-changed``, ``custody.subject-sealed`` and feed silences."""

    def __init__(
        self, pool: asyncpg.Pool, kafka: KafkaSettings, producer: AIOKafkaProducer, clock: Clock = system_clock
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._producer = producer
        self._notification_topic = kafka.topic(NOTIFICATION_REQUESTED.name)
        self._sends: list[asyncio.Future[Any]] = []

    async def handle(self, event: CloudEvent[Payload], record: ConsumerRecord[bytes, bytes]) -> None:
        """One event in its own transaction (the fallback when a batch fails: the culprit is retried alone)."""
        now = self._clock()
        async with self._pool.acquire() as connection, connection.transaction():
            decision = await self._decide(connection, event, record, now)
        await self._conclude([decision])

    async def handle_batch(self, records: Sequence[DecodedRecord]) -> None:
        """A whole fetched batch in one transaction: one commit for hundreds of events instead of one each."""
        now = self._clock()
        decisions = []
        async with self._pool.acquire() as connection, connection.transaction():
            for event, record in records:
                decisions.append(await self._decide(connection, event, record, now))
        await self._conclude(decisions)

    async def _decide(
        self, connection: Connection, event: CloudEvent[Payload], record: ConsumerRecord[bytes, bytes], now: datetime
    ) -> Decision:
        position = source_position(record)
        first_seen_at = await store.claim_event(connection, event.id, position)
        if first_seen_at is None:
            outcome = await self._apply(connection, event, now)
            encoded = [StoredNotification(n.notification_id, value) for n, value in outcome.encoded]
            return Decision(event.id, outcome, encoded)
        if first_seen_at == position:
            return Decision(event.id, Outcome(), await store.notifications_caused_by(connection, event.id), replay=True)
        return Decision(event.id, Outcome(skipped="duplicate_event"), [], duplicate=True)

    async def _conclude(self, decisions: list[Decision]) -> None:
        """After the commit: count, then send each decided notice inside the batch's Kafka transaction."""
        for decision in decisions:
            self._count(decision.outcome)
            if decision.duplicate:
                log.info("event %s already applied from another position; nothing to send", decision.event_id)
            if decision.replay:
                metrics.REPLAYED.inc(len(decision.to_send))
                log.info(
                    "event %s read again after an aborted transaction: re-sending %d",
                    decision.event_id,
                    len(decision.to_send),
                )
            for notification in decision.to_send:
                self._sends.append(await self._send(notification))

    async def _send(self, notification: StoredNotification) -> asyncio.Future[Any]:
        """A send that fails for another reason than an outage fails the batch's Kafka transaction, not the event.

        The event's effect is already committed: if its message went to the retry topic and on to the dead-letter
        topic, a replay would find it applied and send nothing. Aborted, the batch is read again at the same
        positions, and each event re-sends what it recorded.
        """
        try:
            future: asyncio.Future[Any] = await self._producer.send(
                self._notification_topic,
                key=notification.notification_id.encode(),
                value=notification.value,
                headers=KAFKA_HEADERS,
            )
        except Exception as error:
            if transient_dependency(error) is not None:
                raise  # the consumer waits for the broker and reads the batch again
            failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            failed.set_exception(error)
            return failed
        return future

    async def wait_for_sends(self) -> None:
        """Called before the batch's transaction commits; raises if any notification request was not written."""
        sends, self._sends = self._sends, []
        await asyncio.gather(*sends)

    async def _apply(self, connection: Connection, event: CloudEvent[Payload], now: datetime) -> Outcome:
        data = event.data
        if isinstance(data, CustodyStatusChanged):
            return await self._apply_custody_change(connection, event, data, now)
        if isinstance(data, SubscriptionState):
            return await self._apply_subscription_state(connection, event, data, now)
        if isinstance(data, FeedSilence):
            return await self._apply_feed_silence(connection, event, data, now)
        if isinstance(data, SubjectSealed):
            await store.seal_subject(connection, data.agency_id, data.subject_id, data.sealed_at)
            await store.cancel_reminders(connection, data.agency_id, data.subject_id, list(domain.ANNOUNCED_TO))
            return Outcome()
        if isinstance(data, AgencyProfile):
            await store.save_agency_profile(connection, data)
            return Outcome()
        log.warning("ignoring %s event %s: not an event matching consumes", event.type, event.id)
        return Outcome(skipped="unexpected_event_type")

    async def _apply_custody_change(
        self, connection: Connection, event: CloudEvent[Payload], change: CustodyStatusChanged, now: datetime
    ) -> Outcome:
        history = await store.lock_subject(connection, change.agency_id, change.subject_id)
        if history.sealed_at is not None and change.effective_at <= history.sealed_at:
            log.info("custody event %s predates the subject's sealing; not disclosed", event.id)
            return Outcome(skipped="sealed_subject")
        freshness = domain.freshness(history.newest, domain.change_position(event.id, change))
        before = await store.known_state_of_subject(connection, change.agency_id, change.subject_id)
        keys = await store.record_custody_change(
            connection, event.id, change, newest=freshness is domain.Freshness.NEWEST
        )
        if history.newest is not None and freshness is domain.Freshness.STALE:
            newest_event_id = history.newest[3]
            log.info(
                "custody event %s is older than %s, already applied: recorded, nobody told", event.id, newest_event_id
            )
            await store.record_stale_change(connection, event.id, change, newest_event_id)
            return Outcome(skipped=STALE_CHANGE)
        if freshness is domain.Freshness.REDELIVERED:
            return Outcome(skipped="redelivered_change")
        subscriptions = await store.active_subscriptions_for(connection, keys)
        notices = (
            [] if change.case_information_only else domain.status_change_notices(event.id, change, subscriptions, now)
        )
        previous = schedule.ScheduledDates.of(before.change.case if before else None)
        recorded = await self._record(connection, event, notices, now)
        announced = await self._schedule(
            connection, event.id, change, previous=previous, subscriptions=subscriptions, now=now
        )
        for kind, scheduled in announced.items():
            about = domain.feed_notice_key(kind, event.id)
            recorded += await self._record(connection, event, scheduled, now, about=about)
        recorded += await self._record(
            connection, event, await self._to_followers(connection, event.id, change, now), now
        )
        return Outcome(encoded=recorded, custody_change=True, matched=bool(subscriptions))

    async def _apply_subscription_state(
        self, connection: Connection, event: CloudEvent[Payload], state: SubscriptionState, now: datetime
    ) -> Outcome:
        before = await store.load_subscription(connection, state.subscription_id)
        if not domain.is_newer(before, state):
            return Outcome(skipped="stale_subscription_version")
        await store.save_subscription(connection, state)
        if not domain.newly_reachable_contacts(before, state):
            return Outcome()
        known = await store.known_states_for(connection, domain.case_key(state.agency_id, state.identifier))
        for known_state in known:
            dates = schedule.dates_after(known_state.change.status, known_state.change.case)
            await self._plan_reminders(connection, known_state.change, dates, [state], now)
        notices = domain.current_status_notices(before, state, known, now)
        return Outcome(encoded=await self._record(connection, event, notices, now))

    async def _to_followers(
        self, connection: Connection, custody_event_id: str, change: CustodyStatusChanged, now: datetime
    ) -> list[NotificationRequested]:
        """A booking of a person another agency transferred here (same person number, within 30 days) carries that
        agency's subscriptions over; every change of the subject then goes to them too."""
        newly: set[str] = set()
        if change.status in BOOKED:
            since = change.effective_at - domain.FOLLOW_WINDOW
            for came_from in await store.transferred_to(
                connection, change.agency_id, domain.person_numbers(change), since
            ):
                theirs = await store.active_subscriptions_for(connection, came_from.keys)
                ids = [s.subscription_id for s in theirs if s.agency_id == came_from.agency_id]
                newly |= await store.follow(connection, ids, change.agency_id, change.subject_id, came_from)
        followers = await store.followers_of(connection, change.agency_id, change.subject_id)
        if not followers:
            return []
        profile = await store.agency_profile(connection, change.agency_id)
        return domain.follower_notices(
            custody_event_id,
            change,
            followers,
            newly_following=newly,
            agency_name=profile.name if profile else change.agency_id,
            requested_at=now,
        )

    async def _schedule(
        self,
        connection: Connection,
        custody_event_id: str,
        change: CustodyStatusChanged,
        *,
        previous: schedule.ScheduledDates,
        subscriptions: list[SubscriptionState],
        now: datetime,
    ) -> dict[NotificationKind, list[NotificationRequested]]:
        """A new scheduled release or court date is announced and its reminders planned; a changed one replaces
        them; a release that happened first cancels the rest. Returns the announcements by kind."""
        ended = schedule.ended_reminders(change.status)
        if ended:
            await store.cancel_reminders(connection, change.agency_id, change.subject_id, ended)
        dates = schedule.dates_after(change.status, change.case)
        ours = [subscription for subscription in subscriptions if subscription.agency_id == change.agency_id]
        state = domain.KnownCustodyState(custody_event_id=custody_event_id, change=change)
        announced = {
            kind: [
                notice
                for subscription in ours
                for notice in domain.scheduled_notices(kind, custody_event_id, state, subscription, now)
            ]
            for kind in schedule.announcements(previous, dates, now)
        }
        if dates != previous:
            await self._plan_reminders(connection, change, dates, ours, now)
        return announced

    async def _plan_reminders(
        self,
        connection: Connection,
        change: CustodyStatusChanged,
        dates: schedule.ScheduledDates,
        subscriptions: list[SubscriptionState],
        now: datetime,
    ) -> None:
        profile = await store.agency_profile(connection, change.agency_id)
        policy = profile.reminders if profile else ReminderPolicy()
        ids = [subscription.subscription_id for subscription in subscriptions]
        for kind in (NotificationKind.RELEASE_REMINDER, NotificationKind.COURT_REMINDER):
            planned = [
                reminder
                for subscription in subscriptions
                if domain.wants(subscription, kind)
                for reminder in schedule.reminders_for(
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

    async def _apply_feed_silence(
        self, connection: Connection, event: CloudEvent[Payload], silence: FeedSilence, now: datetime
    ) -> Outcome:
        """Silent: tell the urgent cases' subscribers; restored: tell those who were told of this silence."""
        told_about = domain.feed_notice_key(NotificationKind.FEED_SILENCE, silence.silence_id)
        if silence.state == "silent":
            held = sorted(status.value for status in domain.HELD_STATUSES)
            cases = await store.urgent_cases_of_agency(connection, silence.agency_id, held)
            notices = domain.feed_silence_notices(silence.silence_id, cases, now)
            about = told_about
        else:
            told = await store.subscriptions_told(connection, told_about)
            notices = domain.feed_restored_notices(silence.silence_id, told, now)
            about = domain.feed_notice_key(NotificationKind.FEED_RESTORED, silence.silence_id)
        log.info("feed of %s %s: %d notices", silence.agency_id, silence.state, len(notices))
        return Outcome(encoded=await self._record(connection, event, notices, now, about=about))

    async def _record(
        self,
        connection: Connection,
        event: CloudEvent[Payload],
        notices: list[NotificationRequested],
        now: datetime,
        about: str | None = None,
    ) -> list[tuple[NotificationRequested, bytes]]:
        encoded = [(notice, encode_notice(notice, trace_id=event.trace_id, at=now)) for notice in notices]
        return await store.record_notifications(connection, event.id, encoded, about)

    @staticmethod
    def _count(outcome: Outcome) -> None:
        if outcome.skipped:
            metrics.SKIPPED.labels(outcome.skipped).inc()
        if outcome.skipped == STALE_CHANGE:
            metrics.STALE_CHANGES.inc()
        for notice in outcome.notices:
            metrics.NOTIFICATIONS.labels(str(notice.kind), str(notice.channel), str(notice.urgency)).inc()
        if outcome.custody_change:
            metrics.FAN_OUT.observe(len(outcome.notices))
            if not outcome.matched:
                metrics.UNMATCHED.inc()
