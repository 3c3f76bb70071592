"""The delivery service: consumes notification requests, sends them, and keeps every attempt's history.

Composition only: the channels with their providers, the bookkeeping, the dispatcher and the consumer, the routes.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.delivery.channels.email import EmailChannel
from services.delivery.channels.registry import build_channels
from services.delivery.channels.voice import VoiceChannel
from services.delivery.consumers import CONSUMED_TOPICS, CONSUMER_GROUP, PRODUCED_TOPICS, DeliveryHandlers
from services.delivery.deps import ApiContext
from services.delivery.dispatcher import Clock, Dispatcher, utc_now
from services.delivery.domain import NoticeRetrySchedule
from services.delivery.flows.bookkeeper import Bookkeeper
from services.delivery.flows.events import Scheduling
from services.delivery.flows.group_commit import GroupCommit
from services.delivery.links import AcknowledgementTokens
from services.delivery.rendering import NoticeRenderer
from services.delivery.routes.acknowledgement import acknowledgement_router
from services.delivery.routes.bounces import bounces_router
from services.delivery.routes.callbacks import callbacks_router
from services.delivery.routes.calls import voice_router
from services.delivery.routes.history import history_router
from services.delivery.settings import DeliverySettings
from services.delivery.store import attempts
from shared.http import create_service_app
from shared.kafka.consumer import ConsumerRunner
from shared.kafka.retry_topics import RetryTopicPolicy
from shared.runtime import ServiceRuntime


def create_app(settings: DeliverySettings, *, clock: Clock = utc_now) -> FastAPI:
    runtime = ServiceRuntime(
        settings,
        name="delivery",
        migrations=["services.delivery"],
        consumer_group=CONSUMER_GROUP,
        consumed_topics=CONSUMED_TOPICS,
        produced_topics=PRODUCED_TOPICS,
    )
    cipher = settings.contact_cipher()
    tokens = AcknowledgementTokens(settings.token_secret)
    renderer = NoticeRenderer(Path(settings.templates_directory)) if settings.templates_directory else NoticeRenderer()
    channels = build_channels(settings, lambda: runtime.pool, renderer)
    bookkeeper = Bookkeeper(
        settings.kafka,
        Scheduling(
            retry=NoticeRetrySchedule(
                base_seconds=settings.retry_base_seconds,
                max_delay_seconds=settings.retry_max_delay_seconds,
                window_seconds=settings.retry_window_seconds,
                max_attempts=settings.retry_max_attempts,
            ),
            channels=channels,
            lease_seconds=settings.sending_lease_seconds,
        ),
    )

    group_commit = GroupCommit(
        lambda: runtime.pool,
        flush_seconds=settings.bookkeeping_flush_ms / 1000,
        max_batch=settings.bookkeeping_max_batch,
        writers=settings.bookkeeping_writers,
        scope=attempts.bookkeeping_batch,
    )

    async def start(runtime: ServiceRuntime) -> None:
        dispatcher = Dispatcher(
            pool=runtime.pool,
            settings=settings,
            bookkeeper=bookkeeper,
            group_commit=group_commit,
            cipher=cipher,
            tokens=tokens,
            channels=channels,
            producer=runtime.producer,
            clock=clock,
        )
        handlers = DeliveryHandlers(
            pool=runtime.pool,
            cipher=cipher,
            bookkeeper=bookkeeper,
            channels=channels,
            clock=clock,
            on_due=dispatcher.wake,
        )
        runtime.add_consumer(
            ConsumerRunner(
                settings.kafka,
                group_id=CONSUMER_GROUP,
                topics=CONSUMED_TOPICS,
                handler=handlers.handle,
                batch_handler=handlers.handle_batch,
                producer=runtime.producer,
                retry=RetryTopicPolicy(
                    max_attempts=settings.consumer_retry_attempts,
                    base_delay=1.0,
                    max_delay=settings.consumer_retry_max_delay_seconds,
                ),
            )
        )
        runtime.spawn("dispatcher", dispatcher.run)
        runtime.spawn("reconciler", dispatcher.run_reconciler)

    async def stop(_: ServiceRuntime) -> None:
        await channels.close()

    context = ApiContext(
        settings=settings,
        runtime=runtime,
        bookkeeper=bookkeeper,
        group_commit=group_commit,
        tokens=tokens,
        clock=clock,
        channels=channels,
        renderer=renderer,
        cipher=cipher,
    )
    return create_service_app(
        runtime,
        title="Custody Watch delivery",
        description="Sends SMS, email and voice notices once, with receipts, retries, failover, quiet hours and "
        "repeats.",
        routers=[
            callbacks_router(context),
            acknowledgement_router(context),
            history_router(context),
            bounces_router(context, channels.of_type(EmailChannel)),
            voice_router(context, channels.of_type(VoiceChannel)),
        ],
        on_start=start,
        on_stop=stop,
    )
