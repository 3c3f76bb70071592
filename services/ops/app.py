"""The ops service: a dashboard over delivery progress, feed health and the Kafka pipeline, and the admin actions."""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from services.ops.audit import api as audit_api
from services.ops.auth import api as auth_api
from services.ops.auth.domain import SessionSigner
from services.ops.auth.flows import ensure_bootstrap_admin, prune_regularly
from services.ops.clients.delivery import DeliveryClient
from services.ops.clients.ingest import IngestClient
from services.ops.clients.matching import MatchingClient
from services.ops.consumers import CONSUMED_TOPICS, CONSUMER_GROUP, PRODUCED_TOPICS, OpsHandler
from services.ops.dashboard import api as dashboard_api
from services.ops.deliveries import api as delivery_api
from services.ops.deliveries.flows import refresh_retries_gauge
from services.ops.deps import OpsContext
from services.ops.feeds import api as feed_api
from services.ops.feeds.flows import FeedMonitor
from services.ops.overrides import api as override_api
from services.ops.pipeline import api as pipeline_api
from services.ops.pipeline.flows import PipelineMonitor
from services.ops.rendering import install_error_pages
from services.ops.resources import api as resource_api
from services.ops.settings import OpsSettings
from services.ops.storms import api as storm_api
from services.ops.storms.flows import StormMonitor
from shared.http import create_service_app
from shared.kafka.consumer import ConsumerRunner
from shared.runtime import ServiceRuntime
from shared.topics import ALL_TOPICS

ROUTERS = [
    auth_api.router,
    dashboard_api.pages,
    delivery_api.pages,
    audit_api.pages,
    override_api.pages,
    resource_api.pages,
    dashboard_api.api,
    delivery_api.api,
    storm_api.api,
    override_api.api,
    audit_api.api,
    pipeline_api.actions,
    feed_api.actions,
    storm_api.actions,
    override_api.actions,
    delivery_api.actions,
    resource_api.actions,
]
# Unauthenticated visitors get nothing but the login page: no interactive API docs on this service.
HIDDEN_PATHS = {"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}


def create_app(
    settings: OpsSettings,
    *,
    ingest_transport: httpx.AsyncBaseTransport | None = None,
    delivery_transport: httpx.AsyncBaseTransport | None = None,
    matching_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """The ops app; tests may route its calls to ingest, delivery and matching through their own transports."""
    ingest = IngestClient(settings, transport=ingest_transport)
    runtime = ServiceRuntime(
        settings,
        name="ops",
        migrations=["services.ops"],
        consumer_group=CONSUMER_GROUP,
        consumed_topics=CONSUMED_TOPICS,
        produced_topics=PRODUCED_TOPICS,
        republished_topics=ALL_TOPICS,  # a replayed dead letter goes back to the topic it came from
    )
    context = OpsContext(
        settings=settings,
        runtime=runtime,
        signer=SessionSigner(settings),
        ingest=ingest,
        delivery=DeliveryClient(settings, transport=delivery_transport),
        matching=MatchingClient(settings, transport=matching_transport),
        pipeline=PipelineMonitor(settings),
        storms=StormMonitor(settings, ingest),
    )

    async def on_start(started: ServiceRuntime) -> None:
        await ensure_bootstrap_admin(started.pool, settings)
        context.feeds = FeedMonitor(settings, started.pool, context.ingest)
        handler = OpsHandler(started.pool)
        started.add_consumer(
            ConsumerRunner(
                settings.kafka,
                group_id=CONSUMER_GROUP,
                topics=CONSUMED_TOPICS,
                handler=handler,
                batch_handler=handler.handle_batch,
                producer=started.producer,
            )
        )
        started.spawn("feed-monitor", context.feeds.run)
        started.spawn("storm-monitor", context.storms.run)
        started.spawn(
            "delivery-gauges", lambda: refresh_retries_gauge(started.pool, settings.pipeline_poll_interval_seconds)
        )
        started.spawn("prune", lambda: prune_regularly(started.pool))
        started.spawn("pipeline-monitor", context.pipeline.run)

    async def on_stop(_: ServiceRuntime) -> None:
        await context.ingest.close()
        await context.delivery.close()
        await context.matching.close()

    app = create_service_app(
        runtime,
        title="Custody Watch ops dashboard",
        description=(
            "Deliveries, failures, feed health, pipeline lag and held storms for operators; replays, pauses,"
            " storm decisions, status overrides and notice blocks for admins."
        ),
        routers=ROUTERS,
        on_start=on_start,
        on_stop=on_stop,
    )
    app.state.ops = context
    app.router.routes[:] = [route for route in app.router.routes if getattr(route, "path", None) not in HIDDEN_PATHS]
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    install_error_pages(app)
    return app
