"""Feed health: an agency's own (its API key) and every agency's (admin token)."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
from fastapi import APIRouter

from services.ingest.agencies import store as agencies_store
from services.ingest.agencies.domain import Agency
from services.ingest.deps import ADMIN, ADMIN_ONLY, FEEDS, AuthenticatedAgency, Pool
from services.ingest.feed_health import store
from services.ingest.feed_health.domain import feed_is_stale
from services.ingest.feed_health.schemas import FeedHealth
from services.ingest.store import subjects as subjects_store

agency_router = APIRouter(prefix=FEEDS, tags=["agency feeds"])
admin_router = APIRouter(prefix=ADMIN, tags=["administration"], dependencies=ADMIN_ONLY)


async def feed_health_of(pool: asyncpg.Pool, agency: Agency) -> FeedHealth:
    now = datetime.now(UTC)
    async with pool.acquire() as connection:
        counts = await store.feed_counts(connection, agency.agency_id, now)
        in_custody = await subjects_store.in_custody_count(connection, agency.agency_id)
    return FeedHealth(
        agency_id=agency.agency_id,
        name=agency.name,
        last_feed_at=agency.last_feed_at,
        expected_feed_interval_minutes=agency.expected_feed_interval_minutes,
        stale=agency.active
        and feed_is_stale(agency.last_feed_at, agency.created_at, agency.expected_feed_interval_minutes, now),
        notices_paused=agency.notices_paused,
        in_custody=in_custody,
        records_last_24h=counts.last_24h,
        records_total=counts.total,
    )


@agency_router.get("/feed-health", summary="This agency's feed health", response_model=FeedHealth)
async def agency_feed_health(agency: AuthenticatedAgency, pool: Pool) -> FeedHealth:
    return await feed_health_of(pool, agency)


@admin_router.get("/feed-health", summary="Feed health of every agency", response_model=list[FeedHealth])
async def all_feed_health(pool: Pool) -> list[FeedHealth]:
    async with pool.acquire() as connection:
        agencies = await agencies_store.list_agencies(connection)
    return [await feed_health_of(pool, agency) for agency in agencies]
