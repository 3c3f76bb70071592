"""The ingest service: agencies push custody feeds; every real status change becomes one Kafka event."""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI

from services.ingest import files, flows
from services.ingest.api import FEEDS, admin_router, feed_router
from services.ingest.niem_api import niem_router
from services.ingest.settings import IngestSettings
from shared.http import create_service_app
from shared.runtime import ServiceRuntime
from shared.topics import AGENCY_PROFILE, CUSTODY_STATUS_CHANGED, FEED_SILENCE, OPS_ALERT, SUBJECT_SEALED

log = logging.getLogger(__name__)

DESCRIPTION = """Partner agencies push custody records (JSON batches or CSV files) with their API key. Records are
stored raw, normalised through the agency's status map, compared with each subject's current state, and each real
change is published as `custody.status-changed.v1`. Times without an offset are read in the agency's time zone."""


def create_app(settings: IngestSettings) -> FastAPI:
    runtime = ServiceRuntime(
        settings,
        name="ingest",
        migrations=["services.ingest"],
        topics=[CUSTODY_STATUS_CHANGED, SUBJECT_SEALED, AGENCY_PROFILE, OPS_ALERT, FEED_SILENCE],
    )

    async def recover_batches() -> None:
        """Stored batches a crash left unapplied, and uploaded files, are applied here."""
        while True:
            await flows.recover_json_batches(runtime.pool, settings)
            await files.process_pending_files(runtime.pool, settings)
            await asyncio.sleep(settings.recovery_interval_seconds)

    async def watch_feeds() -> None:
        while True:
            await flows.check_feed_health(runtime.pool, settings)
            await asyncio.sleep(settings.feed_health_interval_seconds)

    runtime.spawn("batch-recovery", recover_batches)
    runtime.spawn("feed-health", watch_feeds)
    return create_service_app(
        runtime,
        title="Custody Watch ingest",
        description=DESCRIPTION,
        routers=[feed_router(runtime, settings), niem_router(runtime, settings), admin_router(runtime, settings)],
        body_limits={
            f"{FEEDS}/custody-events": settings.max_body_bytes,
            f"{FEEDS}/custody-events/niem": settings.max_body_bytes,
            f"{FEEDS}/custody-files": settings.max_file_bytes,
        },
    )
