"""Feed health: fetch it from the ingest service, judge staleness, raise one alert per outage; the dashboard's
feeds section; pausing an agency's notices."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import asyncpg

from services.ops import metrics
from services.ops.audit.store import audit
from services.ops.clients.ingest import IngestClient, IngestError
from services.ops.feeds import store
from services.ops.feeds.domain import (
    FeedHealth,
    FeedState,
    feed_alert_event_id,
    feed_alert_message,
    feed_transition,
    is_stale,
    stale_since,
)
from services.ops.schemas import Feed, FeedsSection
from services.ops.settings import OpsSettings
from shared.db import Connection
from shared.envelope import event_source, new_event
from shared.events import OpsAlert
from shared.outbox import enqueue
from shared.topics import OPS_ALERT

log = logging.getLogger(__name__)


class FeedMonitor:
    """Polls feed health; the last error (if any) is shown on the dashboard above the feeds table."""

    def __init__(self, settings: OpsSettings, pool: asyncpg.Pool, client: IngestClient) -> None:
        self._settings = settings
        self._pool = pool
        self._client = client
        self.last_error: str | None = None
        self.last_checked: datetime | None = None

    async def run(self) -> None:
        while True:
            await self.check_once()
            await asyncio.sleep(self._settings.feed_poll_interval_seconds)

    async def check_once(self, now: datetime | None = None) -> list[str]:
        """Fetch, store and judge every feed; returns the kinds of alerts raised (for tests and logs)."""
        try:
            feeds = await self._client.feed_health()
        except IngestError as error:
            metrics.FEED_HEALTH_ERRORS.inc()
            if self.last_error != str(error):
                log.warning("feed health unavailable: %s", error)
            self.last_error = str(error)
            return []
        self.last_error = None
        now = now or datetime.now(UTC)
        self.last_checked = now
        raised = []
        for feed in feeds:
            kind = await self._judge(feed, now)
            if kind is not None:
                raised.append(kind)
        return raised

    async def _judge(self, feed: FeedHealth, now: datetime) -> str | None:
        stale = is_stale(feed, now)
        agency = feed.agency_id
        async with self._pool.acquire() as connection, connection.transaction():
            previous = await store.lock_feed(connection, agency)
            kind = feed_transition(previous.stale if previous else None, stale)
            since = stale_since(feed, previous, stale=stale, now=now)
            state = FeedState.model_validate(
                feed.model_dump(exclude={"stale"})
                | {"name": feed.name or agency, "stale": stale, "stale_since": since, "checked_at": now}
            )
            await store.save_feed(connection, state)
            if kind is not None:
                outage_started = since if kind == "feed_stale" else previous.stale_since if previous else now
                alert = OpsAlert(kind=kind, agency_id=agency, message=feed_alert_message(feed, kind, now), at=now)
                event = new_event(
                    alert,
                    source=event_source("ops"),
                    subject=agency,
                    event_id=feed_alert_event_id(agency, kind, outage_started or now),
                )
                await enqueue(connection, self._settings.kafka.topic(OPS_ALERT.name), agency, event)
        if kind == "feed_stale":
            log.warning("feed of agency %s is stale: %s", agency, feed_alert_message(feed, kind, now))
        elif kind == "feed_recovered":
            log.info("feed of agency %s recovered", agency)
        metrics.FEED_STALE.labels(agency).set(1 if stale else 0)
        if feed.last_feed_at is not None:
            metrics.FEED_LAST_SEEN.labels(agency).set(max(0.0, (now - feed.last_feed_at).total_seconds()))
        metrics.FEED_RECORDS.labels(agency, "accepted").set(feed.records_accepted)
        metrics.FEED_RECORDS.labels(agency, "rejected").set(feed.records_rejected)
        metrics.FEED_IN_CUSTODY.labels(agency).set(feed.in_custody)
        return kind


async def feeds_section(connection: Connection, monitor: FeedMonitor, now: datetime) -> FeedsSection:
    feeds = [
        Feed.model_validate(
            feed.model_dump()
            | {
                "quiet_minutes": int((now - feed.last_feed_at).total_seconds() // 60) if feed.last_feed_at else None,
            }
        )
        for feed in await store.list_feeds(connection)
    ]
    return FeedsSection(feeds=feeds, error=monitor.last_error, checked_at=monitor.last_checked)


async def record_notices_paused(
    pool: asyncpg.Pool, username: str, action: str, agency_id: str, *, paused: bool
) -> None:
    """Ingest has paused (or resumed) the agency's notices: the feeds table and the audit log say so at once."""
    async with pool.acquire() as connection, connection.transaction():
        await store.set_feed_paused(connection, agency_id, paused=paused)
        await audit(connection, username, action, agency_id, outcome="ok")
