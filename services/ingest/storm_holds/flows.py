"""Storm holds, each step in the right transaction.

A storm hold keeps an agency's custody events out of the outbox, so no notice can go out, until an admin decides:
release moves them to the outbox in feed order (same event ids, so nothing doubles); discard drops them and puts
every subject they touched back as it was, so the agency's corrected feed then compares with the truth again.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

import asyncpg

from services.ingest import metrics
from services.ingest.agencies import store as agencies_store
from services.ingest.agencies.domain import Agency
from services.ingest.domain.changes import PlannedEvent
from services.ingest.flows.events import alert_operators
from services.ingest.settings import IngestSettings
from services.ingest.store import subjects as subjects_store
from services.ingest.storm_holds import store
from services.ingest.storm_holds.domain import BASELINE_PERIOD, check_storm
from services.ingest.storm_holds.store import HeldEvent, StormHold
from shared.db import Connection

log = logging.getLogger(__name__)


class HoldNotFoundError(LookupError):
    pass


class HoldDecidedError(ValueError):
    """The hold was already released or discarded."""


async def hold_if_storm(
    connection: Connection,
    settings: IngestSettings,
    agency: Agency,
    *,
    planned: list[PlannedEvent],
    topic: str,
    received_at: datetime,
) -> str | None:
    """Hold the batch's events if the agency is held or this batch makes a storm; the hold id, else None.

    Runs in the batch's transaction with the agency row locked, before the batch's subjects are written.
    """
    if not planned:
        return None
    hold_id = await store.open_hold_of(connection, agency.agency_id)
    if hold_id is None:
        urgent_in_batch = sum(1 for event in planned if event.urgent)
        if urgent_in_batch == 0:
            return None
        policy = agency.storm_policy
        window_start = received_at - policy.window
        decided_at = await store.last_hold_decision(connection, agency.agency_id)
        if decided_at is not None and decided_at > window_start:
            window_start = decided_at  # a decision settles what came before it
        recent, before = await store.urgent_change_counts(
            connection, agency.agency_id, window_start, received_at - policy.window - BASELINE_PERIOD
        )
        check = check_storm(
            policy,
            urgent_in_window=recent + urgent_in_batch,
            in_custody=await subjects_store.in_custody_count(connection, agency.agency_id),
            urgent_in_baseline=before,
        )
        if not check.is_storm:
            return None
        hold_id = str(uuid.uuid4())
        await store.open_hold(connection, hold_id, agency.agency_id, received_at, check.trigger())
        await alert_operators(
            connection,
            settings,
            "storm_held",
            agency.agency_id,
            f"notices of {agency.name} ({agency.agency_id}) held for review: {check.trigger()}",
            at=received_at,
            cause=hold_id,
        )
        metrics.STORM_HOLDS.labels(agency.agency_id).set(1)
        log.warning("storm hold %s opened for agency %s: %s", hold_id, agency.agency_id, check.trigger())
    held = [
        HeldEvent(
            event_id=event.event_id,
            subject_id=event.subject_id,
            topic=topic,
            key=event.key,
            value=event.value,
            status=event.status.value,
            urgent=event.urgent,
        )
        for event in planned
    ]
    await store.hold_events(connection, hold_id, held)
    metrics.HELD_EVENTS.labels(agency.agency_id).inc(len(held))
    return hold_id


async def decide(
    pool: asyncpg.Pool,
    settings: IngestSettings,
    hold_id: str,
    *,
    release: bool,
    operator: str,
    reason: str | None,
) -> StormHold:
    """Release (publish every held event, in order) or discard (publish none, restore the subjects) a hold."""
    async with pool.acquire() as connection, connection.transaction():
        hold = await store.get_hold(connection, hold_id)
        if hold is None:
            raise HoldNotFoundError(hold_id)
        await agencies_store.get_agency(connection, hold.agency_id, for_update=True)  # no batch of the agency meanwhile
        hold = await store.get_hold(connection, hold_id, for_update=True)
        if hold is None:
            raise HoldNotFoundError(hold_id)
        if hold.state != "holding":
            raise HoldDecidedError(f"hold {hold_id} was already {hold.state} by {hold.decided_by}")
        now = datetime.now(UTC)
        if release:
            moved = await store.publish_held_events(connection, hold_id)
            message = f"{moved} held custody changes of {hold.agency_id} released by {operator}"
        else:
            restored = await store.restore_held_subjects(connection, hold_id)
            message = (
                f"{hold.held_changes} held custody changes of {hold.agency_id} discarded by {operator}"
                f" ({restored} subjects restored): {reason}"
            )
        state = "released" if release else "discarded"
        await store.decide_hold(connection, hold_id, state, operator, reason)
        await alert_operators(connection, settings, f"storm_{state}", hold.agency_id, message, at=now, cause=hold_id)
        decided = await store.get_hold(connection, hold_id)
    metrics.STORM_HOLDS.labels(hold.agency_id).set(0)
    log.warning("storm hold %s %s: %s", hold_id, state, message)
    if decided is None:
        raise HoldNotFoundError(hold_id)
    return decided
