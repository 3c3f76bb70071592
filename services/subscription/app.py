"""Builds the subscription service: runtime, consumer, routes and error answers."""

from __future__ import annotations

from functools import partial

from fastapi import FastAPI

from services.subscription.api import add_error_handlers, create_router
from services.subscription.consumers import CONSUMED_TOPICS, CONSUMER_GROUP, PRODUCED_TOPICS, create_handler
from services.subscription.flows.context import Context
from services.subscription.flows.limits import prune_forever
from services.subscription.hotline.api import create_hotline_router
from services.subscription.portal.routes import create_portal_router
from services.subscription.portal.views import Views
from services.subscription.portal.web import Pages
from services.subscription.rendering import default_renderer
from services.subscription.settings import SubscriptionSettings
from shared.http import create_service_app
from shared.kafka.consumer import ConsumerRunner
from shared.runtime import ServiceRuntime


def create_app(settings: SubscriptionSettings) -> FastAPI:
    runtime = ServiceRuntime(
        settings,
        name="subscription",
        migrations=["services.subscription"],
        consumer_group=CONSUMER_GROUP,
        consumed_topics=CONSUMED_TOPICS,
        produced_topics=PRODUCED_TOPICS,
    )
    context = Context(settings, lambda: runtime.pool)
    pages = Pages(
        default_renderer(),
        settings.token_secret,
        context.cipher,
        secure_cookies=settings.public_base_url.startswith("https://"),
    )

    async def on_start(started: ServiceRuntime) -> None:
        started.spawn("prune", partial(prune_forever, context))
        started.add_consumer(
            ConsumerRunner(
                settings.kafka,
                group_id=CONSUMER_GROUP,
                topics=CONSUMED_TOPICS,
                handler=create_handler(context),
                producer=started.producer,
            )
        )

    app = create_service_app(
        runtime,
        title="Custody Watch: subscriptions",
        description="Victims subscribe to a case, verify a phone or email, look up a custody status, and can "
        "always stop: manage link, RFC 8058 one-click unsubscribe, SMS STOP.",
        routers=[create_router(context, pages), create_portal_router(context, pages), create_hotline_router(context)],
        on_start=on_start,
    )
    add_error_handlers(app, pages)
    app.state.portal = Views(context, pages)
    return app
