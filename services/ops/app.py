"""The ops service: a dashboard over delivery progress, feed health and the Kafka pipeline, and the admin actions."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.ops import metrics, store
from services.ops.api import (
    actions_router,
    json_router,
    login_redirect,
    login_router,
    pages_router,
    render,
)
from services.ops.auth import NotAuthenticatedError, SessionSigner, hash_password
from services.ops.clients import DeliveryClient, IngestClient, MatchingClient
from services.ops.consumers import OpsHandler
from services.ops.context import OpsContext
from services.ops.domain import Role
from services.ops.feeds import FeedMonitor
from services.ops.pipeline import PipelineMonitor
from services.ops.resources import resources_actions, resources_pages
from services.ops.settings import OpsSettings
from services.ops.storms import StormMonitor
from shared.http import create_service_app
from shared.kafka import ConsumerRunner
from shared.runtime import ServiceRuntime
from shared.topics import NOTIFICATION_STATUS_CHANGED, OPS_ALERT

log = logging.getLogger(__name__)

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


async def ensure_bootstrap_admin(context: OpsContext) -> None:
    settings = context.settings
    if settings.bootstrap_admin_username is None or settings.bootstrap_admin_password is None:
        return
    async with context.runtime.pool.acquire() as connection:
        created = await store.create_operator(
            connection, settings.bootstrap_admin_username, hash_password(settings.bootstrap_admin_password), Role.ADMIN
        )
        if created:
            await store.audit(connection, "system", "create_operator", settings.bootstrap_admin_username, outcome="ok")
            log.info("bootstrap admin %s created", settings.bootstrap_admin_username)


def wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get("accept", "")


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
        topics=[NOTIFICATION_STATUS_CHANGED, OPS_ALERT],
        consumer_groups=["ops"],
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

    async def refresh_gauges() -> None:
        """Keep the retries-in-flight gauge current even when nobody has the dashboard open; prune hourly."""
        rounds_per_hour = max(1, int(3600 / settings.pipeline_poll_interval_seconds))
        rounds = 0
        while True:
            async with runtime.pool.acquire() as connection:
                metrics.RETRIES_IN_FLIGHT.set(await store.retries_in_flight(connection))
                if rounds % rounds_per_hour == 0:
                    await store.prune(connection)
            rounds += 1
            await asyncio.sleep(settings.pipeline_poll_interval_seconds)

    async def on_start(started: ServiceRuntime) -> None:
        await ensure_bootstrap_admin(context)
        context.feeds = FeedMonitor(settings, started.pool, context.ingest)
        started.add_consumer(
            ConsumerRunner(
                settings.kafka,
                group_id="ops",
                topics=[NOTIFICATION_STATUS_CHANGED.name, OPS_ALERT.name],
                handler=OpsHandler(started.pool),
                producer=started.producer,
            )
        )
        started.spawn("feed-monitor", context.feeds.run)
        started.spawn("storm-monitor", context.storms.run)
        started.spawn("delivery-gauges", refresh_gauges)
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
        routers=[login_router, pages_router, json_router, actions_router, resources_pages, resources_actions],
        on_start=on_start,
        on_stop=on_stop,
    )
    app.state.ops = context
    # Unauthenticated visitors get nothing but the login page: no interactive API docs on this service.
    hidden = {"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
    app.router.routes[:] = [route for route in app.router.routes if getattr(route, "path", None) not in hidden]
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")

    @app.exception_handler(NotAuthenticatedError)
    async def not_authenticated(request: Request, _: NotAuthenticatedError) -> Response:
        if wants_html(request) or (request.method == "GET" and not request.url.path.startswith("/api/")):
            return login_redirect(request)
        return JSONResponse({"detail": "log in first"}, status_code=401)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        if wants_html(request):
            return render(request, "result.html", error.status_code, ok=False, message=str(error.detail))
        return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in issue['loc'][1:]) or 'request'}: {issue['msg']}"
            for issue in error.errors()
        )
        if wants_html(request):
            return render(request, "result.html", 422, ok=False, message=f"Invalid request: {problems}")
        return JSONResponse({"detail": problems}, status_code=422)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    return app
