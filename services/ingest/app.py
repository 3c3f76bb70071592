"""The ingest service: agencies push custody feeds; every real status change becomes one Kafka event."""

from __future__ import annotations

from fastapi import FastAPI

from services.ingest.agencies.api import router as agencies_router
from services.ingest.consumers import CONSUMED_TOPICS, PRODUCED_TOPICS
from services.ingest.deps import FEEDS
from services.ingest.feed_health import api as feed_health_api
from services.ingest.feed_health.flows import check_feed_health
from services.ingest.flows.batches import recover_stored_batches
from services.ingest.flows.files import process_pending_files
from services.ingest.keys.api import router as keys_router
from services.ingest.overrides.api import router as overrides_router
from services.ingest.routes.feeds import feed_router
from services.ingest.routes.niem import router as niem_router
from services.ingest.sealing.api import router as sealing_router
from services.ingest.settings import IngestSettings
from services.ingest.storm_holds.api import router as storm_holds_router
from shared.http import create_service_app
from shared.runtime import ServiceRuntime

DESCRIPTION = """Partner agencies push custody records (JSON batches, CSV files or NIEM XML exchanges) with their API
key. Records are stored raw, normalised through the agency's status map, compared with each subject's current state,
and each real change is published as `custody.status-changed.v1`. Times without an offset are read in the agency's
time zone."""


def create_app(settings: IngestSettings) -> FastAPI:
    runtime = ServiceRuntime(
        settings,
        name="ingest",
        migrations=["services.ingest"],
        consumed_topics=CONSUMED_TOPICS,
        produced_topics=PRODUCED_TOPICS,
    )

    async def recover_batches() -> None:
        """Stored batches a crash left unapplied, and uploaded files, are applied here."""
        await recover_stored_batches(runtime.pool, settings)
        await process_pending_files(runtime.pool, settings)

    runtime.every("batch-recovery", settings.recovery_interval_seconds, recover_batches)
    runtime.every(
        "feed-health", settings.feed_health_interval_seconds, lambda: check_feed_health(runtime.pool, settings)
    )
    return create_service_app(
        runtime,
        title="Custody Watch ingest",
        description=DESCRIPTION,
        routers=[
            feed_router(settings),
            niem_router,
            sealing_router,
            feed_health_api.agency_router,
            agencies_router,
            keys_router,
            storm_holds_router,
            overrides_router,
            feed_health_api.admin_router,
        ],
        body_limits={
            f"{FEEDS}/custody-events": settings.max_body_bytes,
            f"{FEEDS}/custody-events/niem": settings.max_body_bytes,
            f"{FEEDS}/custody-files": settings.max_file_bytes,
        },
    )
