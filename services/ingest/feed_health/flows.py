"""Feed health: a feed that arrives again, a feed gone quiet (operators are alerted once), and telling subscribers
of a silence when their agency asked for it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Literal

import asyncpg

from services.ingest import metrics
from services.ingest.agencies import store as agencies_store
from services.ingest.agencies.domain import Agency
from services.ingest.domain.events import stable_id
from services.ingest.feed_health import store
from services.ingest.feed_health.domain import feed_is_stale
from services.ingest.flows.events import alert_operators, publish
from services.ingest.settings import IngestSettings
from services.ingest.store import subjects as subjects_store
from shared.db import Connection
from shared.events import FeedSilence
from shared.topics import FEED_SILENCE

log = logging.getLogger(__name__)


async def note_feed_received(connection: Connection, settings: IngestSettings, agency_id: str, at: datetime) -> None:
    """Record that a feed arrived; if the feed had been flagged quiet, say it recovered (once)."""
    metrics.LAST_FEED.labels(agency_id).set(at.timestamp())
    before = await store.mark_feed_received(connection, agency_id, at)
    if before.silence_notified_for is not None:
        await _enqueue_feed_silence(
            connection, settings, agency_id, state="restored", silent_since=before.silence_notified_for, at=at
        )
    if before.feed_stale:
        message = f"feed of {agency_id} is arriving again"
        await alert_operators(connection, settings, "feed_recovered", agency_id, message, at=at, cause=at.isoformat())
        metrics.FEED_STALE.labels(agency_id).set(0)


async def _enqueue_feed_silence(
    connection: Connection,
    settings: IngestSettings,
    agency_id: str,
    *,
    state: Literal["silent", "restored"],
    silent_since: datetime,
    at: datetime,
) -> None:
    silence_id = stable_id(f"silence:{agency_id}/{silent_since.isoformat()}")
    silence = FeedSilence(agency_id=agency_id, silence_id=silence_id, state=state, silent_since=silent_since, at=at)
    await publish(
        connection, settings, FEED_SILENCE, agency_id, silence, event_id=stable_id(f"{silence_id}/{state}"), at=at
    )
    if state == "silent":
        metrics.SILENCE_NOTICES.labels(agency_id).inc()
        log.warning("feed of %s silent since %s: its subscribers are told", agency_id, silent_since.isoformat())
    else:
        log.info("feed of %s is back: subscribers told of the silence are told too", agency_id)


async def tell_subscribers_of_silence(
    connection: Connection, settings: IngestSettings, agency: Agency, now: datetime
) -> bool:
    """Once per outage, when the agency opted in and its feed is silent beyond the notice time; True if told now."""
    after = agency.silence_notice_after_minutes
    silent_since = agency.last_feed_at or agency.created_at
    if not agency.active or after is None or agency.silence_notified_for == silent_since:
        return False
    if not feed_is_stale(agency.last_feed_at, agency.created_at, after, now):
        return False
    async with connection.transaction():
        locked = await agencies_store.get_agency(connection, agency.agency_id, for_update=True)
        if locked is None or locked.last_feed_at != agency.last_feed_at or locked.silence_notified_for == silent_since:
            return False
        await store.set_silence_notified(connection, agency.agency_id, silent_since)
        await _enqueue_feed_silence(
            connection, settings, agency.agency_id, state="silent", silent_since=silent_since, at=now
        )
    return True


async def check_feed_health(pool: asyncpg.Pool, settings: IngestSettings, now: datetime | None = None) -> list[str]:
    """Flag agencies whose feed went quiet (one ``feed_stale`` alert each); returns the ids flagged now.

    Agencies that opted in also get their subscribers told once the silence outlasts their notice time.
    """
    now = now or datetime.now(UTC)
    flagged: list[str] = []
    async with pool.acquire() as connection:
        for agency in await agencies_store.list_agencies(connection):
            await tell_subscribers_of_silence(connection, settings, agency, now)
            stale = agency.active and feed_is_stale(
                agency.last_feed_at, agency.created_at, agency.expected_feed_interval_minutes, now
            )
            metrics.FEED_STALE.labels(agency.agency_id).set(1 if stale else 0)
            metrics.IN_CUSTODY.labels(agency.agency_id).set(
                await subjects_store.in_custody_count(connection, agency.agency_id)
            )
            if agency.last_feed_at is not None:
                metrics.LAST_FEED.labels(agency.agency_id).set(agency.last_feed_at.timestamp())
            if not stale or agency.feed_stale:
                continue
            async with connection.transaction():
                locked = await agencies_store.get_agency(connection, agency.agency_id, for_update=True)
                if locked is None or locked.feed_stale or locked.last_feed_at != agency.last_feed_at:
                    continue
                await store.set_feed_stale(connection, agency.agency_id, True)
                since = agency.last_feed_at.isoformat() if agency.last_feed_at else "never"
                message = (
                    f"no feed from {agency.name} ({agency.agency_id}) for more than "
                    f"{agency.expected_feed_interval_minutes} min (last: {since})"
                )
                await alert_operators(
                    connection, settings, "feed_stale", agency.agency_id, message, at=now, cause=now.isoformat()
                )
                flagged.append(agency.agency_id)
                log.warning("feed stale: %s", message)
    return flagged
