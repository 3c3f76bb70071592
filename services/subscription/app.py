"""Builds the subscription service: runtime, consumer, routes and error answers."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.subscription.api import create_router, problem_response, wants_html
from services.subscription.consumers import CONSUMED_TOPICS, CONSUMER_GROUP, create_handler
from services.subscription.domain.errors import SubscriptionError
from services.subscription.portal.routes import create_portal_router
from services.subscription.portal.views import Views
from services.subscription.portal.web import Pages, PortalRefusal, refusal_page
from services.subscription.service import SubscriptionService
from services.subscription.settings import SubscriptionSettings
from shared.http import create_service_app
from shared.kafka import ConsumerRunner
from shared.runtime import ServiceRuntime
from shared.topics import NOTIFICATION_ACKNOWLEDGED, NOTIFICATION_REQUESTED, SUBSCRIPTION_STATE

PRODUCED_TOPICS = [SUBSCRIPTION_STATE, NOTIFICATION_REQUESTED, NOTIFICATION_ACKNOWLEDGED]


def create_app(settings: SubscriptionSettings) -> FastAPI:
    runtime = ServiceRuntime(
        settings,
        name="subscription",
        migrations=["services.subscription"],
        topics=[*CONSUMED_TOPICS, *PRODUCED_TOPICS],
        consumer_groups=[CONSUMER_GROUP],
    )
    service = SubscriptionService(settings, lambda: runtime.pool)
    pages = Pages(
        service.renderer,
        settings.token_secret,
        service.cipher,
        secure_cookies=settings.public_base_url.startswith("https://"),
    )

    async def on_start(started: ServiceRuntime) -> None:
        started.spawn("prune", service.prune_forever)
        started.add_consumer(
            ConsumerRunner(
                settings.kafka,
                group_id=CONSUMER_GROUP,
                topics=[spec.name for spec in CONSUMED_TOPICS],
                handler=create_handler(service),
                producer=started.producer,
            )
        )

    app = create_service_app(
        runtime,
        title="Custody Watch: subscriptions",
        description="Victims subscribe to a case, verify a phone or email, look up a custody status, and can "
        "always stop: manage link, RFC 8058 one-click unsubscribe, SMS STOP.",
        routers=[create_router(service, pages), create_portal_router(service, pages)],
        on_start=on_start,
    )

    async def handle_problem(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, SubscriptionError)  # noqa: S101 - registered for this type only
        return problem_response(error)

    app.add_exception_handler(SubscriptionError, handle_problem)
    app.add_exception_handler(PortalRefusal, refusal_page)

    async def portal_error_page(request: Request, error: Exception) -> Response:
        """A browser on a portal address gets a page in its language; programs and /v1 keep FastAPI's JSON."""
        if wants_html(request) and not request.url.path.startswith("/v1/"):
            status = error.status_code if isinstance(error, StarletteHTTPException) else 422
            return pages.problem(request, "not_found" if status == 404 else "invalid", status)
        if isinstance(error, RequestValidationError):
            return await request_validation_exception_handler(request, error)
        assert isinstance(error, StarletteHTTPException)  # noqa: S101 - registered for these two types only
        return await http_exception_handler(request, error)

    app.add_exception_handler(StarletteHTTPException, portal_error_page)
    app.add_exception_handler(RequestValidationError, portal_error_page)
    app.state.portal = Views(service, pages)
    return app
