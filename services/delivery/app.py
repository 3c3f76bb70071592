"""The delivery service: consumes notification requests, sends them, and keeps every attempt's history."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import asyncpg
from fastapi import FastAPI

from services.delivery.api import ApiContext, acknowledgement_router, callbacks_router, history_router
from services.delivery.bounces import bounces_router
from services.delivery.calls import VoiceContext, voice_router
from services.delivery.consumers import DeliveryHandlers
from services.delivery.dispatcher import CONSUMER_GROUP, Clock, Dispatcher, StatusLookup, utc_now
from services.delivery.domain import RetryPolicy
from services.delivery.flows import Bookkeeper, Scheduling
from services.delivery.links import AcknowledgementTokens
from services.delivery.providers.base import EmailProvider
from services.delivery.providers.failover import FailoverSmsProvider
from services.delivery.providers.smtp import SmtpEmailProvider
from services.delivery.providers.twilio import TwilioSmsProvider
from services.delivery.providers.twilio_voice import TwilioVoiceProvider
from services.delivery.rendering import NoticeRenderer
from services.delivery.sendrate import SharedSendRate
from services.delivery.settings import FAILOVER_ROUTE, DeliverySettings
from shared.http import create_service_app
from shared.kafka import ConsumerRunner
from shared.kafka import RetryPolicy as ConsumerRetryPolicy
from shared.runtime import ServiceRuntime
from shared.topics import (
    AGENCY_PROFILE,
    CONTACT_POINT_DISABLED,
    NOTIFICATION_ACKNOWLEDGED,
    NOTIFICATION_REQUESTED,
    NOTIFICATION_STATUS_CHANGED,
    SUBJECT_SEALED,
    SUBSCRIPTION_STATE,
)


def build_sms(
    settings: DeliverySettings, pool: Callable[[], asyncpg.Pool]
) -> tuple[FailoverSmsProvider, dict[str, StatusLookup]]:
    """The configured SMS providers, primary first, behind failover; each paced at its rate across all replicas."""
    providers = [
        TwilioSmsProvider(
            name=p.name,
            account_sid=p.account_sid,
            auth_token=p.auth_token,
            from_number=p.from_number,
            base_url=p.base_url,
            timeout=p.timeout,
            max_connections=settings.dispatch_concurrency + 10,
        )
        for p in settings.sms_providers
    ]
    route = providers[0].name if len(providers) == 1 else FAILOVER_ROUTE
    limiters = {p.name: SharedSendRate(pool, f"sms:{p.name}", p.rate_per_second) for p in settings.sms_providers}
    failover = FailoverSmsProvider(providers, name=route, rate_limiters=limiters)
    return failover, {provider.name: provider for provider in providers}


def build_voice(settings: DeliverySettings) -> TwilioVoiceProvider:
    voice = settings.voice_provider
    return TwilioVoiceProvider(
        name=voice.name,
        account_sid=voice.account_sid,
        auth_token=voice.auth_token,
        from_number=voice.from_number,
        base_url=voice.base_url,
        timeout=voice.timeout,
    )


def build_email(settings: DeliverySettings) -> EmailProvider:
    smtp = settings.smtp
    return SmtpEmailProvider(
        name="smtp",
        host=smtp.host,
        port=smtp.port,
        from_address=smtp.from_address,
        username=smtp.username,
        password=smtp.password,
        starttls=smtp.starttls,
        use_tls=smtp.use_tls,
        timeout=smtp.timeout,
    )


def create_app(settings: DeliverySettings, *, clock: Clock = utc_now) -> FastAPI:
    runtime = ServiceRuntime(
        settings,
        name="delivery",
        migrations=["services.delivery"],
        topics=[
            NOTIFICATION_REQUESTED,
            AGENCY_PROFILE,
            NOTIFICATION_ACKNOWLEDGED,
            NOTIFICATION_STATUS_CHANGED,
            CONTACT_POINT_DISABLED,
            SUBSCRIPTION_STATE,
            SUBJECT_SEALED,
        ],
        consumer_groups=[CONSUMER_GROUP],
    )
    cipher = settings.contact_cipher()
    tokens = AcknowledgementTokens(settings.token_secret)
    bookkeeper = Bookkeeper(
        settings.kafka,
        Scheduling(
            retry=RetryPolicy(
                base_seconds=settings.retry_base_seconds,
                max_delay_seconds=settings.retry_max_delay_seconds,
                window_seconds=settings.retry_window_seconds,
                max_attempts=settings.retry_max_attempts,
            ),
            repeats=settings.repeats(),
            lease_seconds=settings.sending_lease_seconds,
        ),
    )
    sms, status_lookups = build_sms(settings, lambda: runtime.pool)
    email = build_email(settings)
    voice = build_voice(settings)
    renderer = NoticeRenderer(Path(settings.templates_directory)) if settings.templates_directory else NoticeRenderer()

    async def start(runtime: ServiceRuntime) -> None:
        dispatcher = Dispatcher(
            pool=runtime.pool,
            settings=settings,
            bookkeeper=bookkeeper,
            cipher=cipher,
            tokens=tokens,
            sms=sms,
            email=email,
            voice=voice,
            status_lookups=status_lookups,
            producer=runtime.producer,
            renderer=renderer,
            clock=clock,
        )
        handlers = DeliveryHandlers(
            pool=runtime.pool,
            cipher=cipher,
            bookkeeper=bookkeeper,
            repeats=settings.repeats(),
            clock=clock,
            on_due=dispatcher.wake,
        )
        runtime.add_consumer(
            ConsumerRunner(
                settings.kafka,
                group_id=CONSUMER_GROUP,
                topics=[
                    NOTIFICATION_REQUESTED.name,
                    AGENCY_PROFILE.name,
                    NOTIFICATION_ACKNOWLEDGED.name,
                    SUBSCRIPTION_STATE.name,
                    SUBJECT_SEALED.name,
                ],
                handler=handlers.handle,
                batch_handler=handlers.handle_batch,
                producer=runtime.producer,
                retry=ConsumerRetryPolicy(
                    max_attempts=settings.consumer_retry_attempts,
                    base_delay=1.0,
                    max_delay=settings.consumer_retry_max_delay_seconds,
                ),
            )
        )
        runtime.spawn("dispatcher", dispatcher.run)
        runtime.spawn("reconciler", dispatcher.run_reconciler)

    async def stop(_: ServiceRuntime) -> None:
        await sms.close()
        await email.close()
        await voice.close()

    context = ApiContext(
        settings=settings, runtime=runtime, bookkeeper=bookkeeper, tokens=tokens, clock=clock, sms_route=sms.name
    )
    return create_service_app(
        runtime,
        title="Custody Watch delivery",
        description="Sends SMS and email notices once, with receipts, retries, failover, quiet hours and repeats.",
        routers=[
            callbacks_router(context),
            acknowledgement_router(context),
            history_router(context),
            bounces_router(context),
            voice_router(VoiceContext(api=context, renderer=renderer, cipher=cipher)),
        ],
        on_start=start,
        on_stop=stop,
    )
