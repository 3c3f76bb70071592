"""Assemble what the dashboard shows from each feature's section."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from services.ops.alerts.store import recent_alerts
from services.ops.deliveries.flows import delivery_section
from services.ops.feeds.flows import FeedMonitor, feeds_section
from services.ops.pipeline.flows import PipelineMonitor, pipeline_section
from services.ops.schemas import Dashboard
from services.ops.storms.flows import StormMonitor, storms_section


async def build_dashboard(
    pool: asyncpg.Pool, feeds: FeedMonitor, pipeline: PipelineMonitor, storms: StormMonitor
) -> Dashboard:
    now = datetime.now(UTC)
    async with pool.acquire() as connection:
        return Dashboard(
            generated_at=now,
            delivery=await delivery_section(connection, now),
            feeds=await feeds_section(connection, feeds, now),
            pipeline=await pipeline_section(connection, pipeline),
            alerts=await recent_alerts(connection),
            storms=storms_section(storms),
        )
