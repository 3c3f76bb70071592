"""Matching's use cases: each consumed event applied to matching's own state, and the notices it causes recorded.

Every function here runs inside the caller's database transaction; :mod:`services.matching.consumers` claims the
event first and sends what was recorded afterwards.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg

from services.matching import domain
from services.matching.reminders import flows as reminders
from services.matching.reminders import store as reminder_store
from services.matching.reminders.domain import ANNOUNCED_TO, ScheduledDates, dates_after
from services.matching.store import agencies, notifications, retention, subjects, subscriptions
from services.matching.transfers.flows import notices_to_followers
from shared.db import Connection
from shared.envelope import CloudEvent
from shared.events import (
    AgencyProfile,
    CustodyStatusChanged,
    FeedSilence,
    NotificationKind,
    NotificationRequested,
    Payload,
    SubjectSealed,
    SubscriptionState,
)
from shared.kafka.consumer import UnexpectedEventError

log = logging.getLogger(__name__)

STALE_CHANGE = "stale_change"


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


async def apply(connection: Connection, event: CloudEvent[Payload], now: datetime) -> Outcome:
    """Apply one consumed event (claimed already) and record the notices it causes."""
    data = event.data
    if isinstance(data, CustodyStatusChanged):
        return await apply_custody_change(connection, event, data, now)
    if isinstance(data, SubscriptionState):
        return await apply_subscription_state(connection, event, data, now)
    if isinstance(data, FeedSilence):
        return await apply_feed_silence(connection, event, data, now)
    if isinstance(data, SubjectSealed):
        await subjects.seal_subject(connection, data.agency_id, data.subject_id, data.sealed_at)
        await reminder_store.cancel_reminders(connection, data.agency_id, data.subject_id, list(ANNOUNCED_TO))
        return Outcome()
    if isinstance(data, AgencyProfile):
        await agencies.save_agency_profile(connection, data)
        return Outcome()
    raise UnexpectedEventError(f"matching does not handle {event.type}")


async def apply_custody_change(
    connection: Connection, event: CloudEvent[Payload], change: CustodyStatusChanged, now: datetime
) -> Outcome:
    history = await subjects.lock_subject(connection, change.agency_id, change.subject_id)
    if history.sealed_at is not None and change.effective_at <= history.sealed_at:
        log.info("custody event %s predates the subject's sealing; not disclosed", event.id)
        return Outcome(skipped="sealed_subject")
    freshness = domain.freshness(history.newest, domain.change_position(event.id, change))
    before = await subjects.known_state_of_subject(connection, change.agency_id, change.subject_id)
    keys = await subjects.record_custody_change(
        connection, event.id, change, newest=freshness is domain.Freshness.NEWEST
    )
    if history.newest is not None and freshness is domain.Freshness.STALE:
        newest_event_id = history.newest[3]
        log.info("custody event %s is older than %s, already applied: recorded, nobody told", event.id, newest_event_id)
        await subjects.record_stale_change(connection, event.id, change, newest_event_id)
        return Outcome(skipped=STALE_CHANGE)
    if freshness is domain.Freshness.REDELIVERED:
        return Outcome(skipped="redelivered_change")
    matched = await subscriptions.active_subscriptions_for(connection, keys)
    notices = [] if change.case_information_only else domain.status_change_notices(event.id, change, matched, now)
    recorded = await record(connection, event, notices, now)
    announced = await reminders.announce_and_plan(
        connection,
        event.id,
        change,
        previous=ScheduledDates.of(before.change.case if before else None),
        subscriptions=matched,
        now=now,
    )
    for kind, scheduled in announced.items():
        recorded += await record(connection, event, scheduled, now, about=domain.feed_notice_key(kind, event.id))
    recorded += await record(connection, event, await notices_to_followers(connection, event.id, change, now), now)
    return Outcome(encoded=recorded, custody_change=True, matched=bool(matched))


async def apply_subscription_state(
    connection: Connection, event: CloudEvent[Payload], state: SubscriptionState, now: datetime
) -> Outcome:
    before = await subscriptions.load_subscription(connection, state.subscription_id)
    if not domain.is_newer(before, state):
        return Outcome(skipped="stale_subscription_version")
    await subscriptions.save_subscription(connection, state)
    if not domain.newly_reachable_contacts(before, state):
        return Outcome()
    known = await subjects.known_states_for(connection, domain.case_key(state.agency_id, state.identifier))
    for known_state in known:
        dates = dates_after(known_state.change.status, known_state.change.case)
        await reminders.plan_reminders(connection, known_state.change, dates, [state], now)
    notices = domain.current_status_notices(before, state, known, now)
    return Outcome(encoded=await record(connection, event, notices, now))


async def apply_feed_silence(
    connection: Connection, event: CloudEvent[Payload], silence: FeedSilence, now: datetime
) -> Outcome:
    """Silent: tell the urgent cases' subscribers; restored: tell those who were told of this silence."""
    told_about = domain.feed_notice_key(NotificationKind.FEED_SILENCE, silence.silence_id)
    if silence.state == "silent":
        held = sorted(status.value for status in domain.HELD_STATUSES)
        cases = await subjects.urgent_cases_of_agency(connection, silence.agency_id, held)
        notices = domain.feed_silence_notices(silence.silence_id, cases, now)
        about = told_about
    else:
        told = await subscriptions.subscriptions_told(connection, told_about)
        notices = domain.feed_restored_notices(silence.silence_id, told, now)
        about = domain.feed_notice_key(NotificationKind.FEED_RESTORED, silence.silence_id)
    log.info("feed of %s %s: %d notices", silence.agency_id, silence.state, len(notices))
    return Outcome(encoded=await record(connection, event, notices, now, about=about))


async def record(
    connection: Connection,
    event: CloudEvent[Payload],
    notices: list[NotificationRequested],
    now: datetime,
    about: str | None = None,
) -> list[tuple[NotificationRequested, bytes]]:
    """Encode the notices ``event`` caused and record those not decided before; returns those."""
    encoded = domain.encode_notices(notices, trace_id=event.trace_id, at=now)
    return await notifications.record_notifications(connection, event.id, encoded, about)


PRUNE_INTERVAL_SECONDS = 3600.0


async def prune_forever(pool: asyncpg.Pool, retention_days: int) -> None:
    """Once an hour, forget what is older than the retention."""
    while True:
        cutoff = datetime.now(UTC) - timedelta(days=retention_days)
        async with pool.acquire() as connection:
            removed = await retention.prune(connection, cutoff)
        if removed:
            log.info("pruned %d rows older than %d days", removed, retention_days)
        await asyncio.sleep(PRUNE_INTERVAL_SECONDS)
