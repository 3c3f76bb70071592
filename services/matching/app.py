"""The matching service: fans each custody change out to every reachable subscriber of the case, exactly once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from services.matching import store
from services.matching.api import stats_router
from services.matching.consumers import Clock, Matcher, file_clock, system_clock
from services.matching.reminders import ReminderSender
from services.matching.settings import MatchingSettings
from shared.http import create_service_app
from shared.kafka import ConsumerRunner, create_producer
from shared.runtime import ServiceRuntime
from shared.topics import (
    AGENCY_PROFILE,
    CUSTODY_STATUS_CHANGED,
    FEED_SILENCE,
    NOTIFICATION_REQUESTED,
    SUBJECT_SEALED,
    SUBSCRIPTION_STATE,
)

log = logging.getLogger(__name__)

CONSUMED_TOPICS = [AGENCY_PROFILE, SUBSCRIPTION_STATE, CUSTODY_STATUS_CHANGED, SUBJECT_SEALED, FEED_SILENCE]


class MatchingWorker:
    """Owns the transactional producer and the consumer; restarted as one by the runtime if it crashes."""

    def __init__(self, runtime: ServiceRuntime, settings: MatchingSettings, clock: Clock) -> None:
        self._runtime = runtime
        self._settings = settings
        self._clock = clock
        self.runner: ConsumerRunner | None = None
        self._producer: AIOKafkaProducer | None = None

    async def prepare(self) -> None:
        """Start the producer before the service reports ready.

        Starting a producer with our transactional id fences any predecessor with the same id and aborts its open
        transaction, so a restarted process never commits alongside its crashed self.
        """
        self._producer = await create_producer(self._settings.kafka, transactional_id=self._settings.transactional_id)

    async def run(self) -> None:
        settings = self._settings
        producer, self._producer = self._producer, None
        if producer is None:  # restarted after a crash: a fresh producer, fencing the one that failed
            producer = await create_producer(settings.kafka, transactional_id=settings.transactional_id)
        try:
            matcher = Matcher(self._runtime.pool, settings.kafka, producer, self._clock)
            runner = ConsumerRunner(
                settings.kafka,
                group_id=settings.consumer_group,
                topics=[spec.name for spec in CONSUMED_TOPICS],
                handler=matcher.handle,
                batch_handler=matcher.handle_batch,
                producer=producer,
                batch_size=settings.batch_size,
                transactional=True,
                before_commit=matcher.wait_for_sends,
            )
            self._show_in_readiness(runner)
            await runner.run()
        finally:
            await producer.stop()

    def _show_in_readiness(self, runner: ConsumerRunner) -> None:
        consumers = self._runtime.consumers
        if self.runner in consumers:
            consumers[consumers.index(self.runner)] = runner
        else:
            consumers.append(runner)
        self.runner = runner


PRUNE_INTERVAL_SECONDS = 3600.0


def pruner(runtime: ServiceRuntime, settings: MatchingSettings) -> Callable[[], Awaitable[None]]:
    async def prune_forever() -> None:
        while True:
            cutoff = datetime.now(UTC) - timedelta(days=settings.retention_days)
            async with runtime.pool.acquire() as connection:
                removed = await store.prune(connection, cutoff)
            if removed:
                log.info("pruned %d rows older than %d days", removed, settings.retention_days)
            await asyncio.sleep(PRUNE_INTERVAL_SECONDS)

    return prune_forever


def reminder_sender(runtime: ServiceRuntime, settings: MatchingSettings, clock: Clock) -> Callable[[], Awaitable[None]]:
    """Its own transactional producer: the consumer's is inside a batch's transaction at any moment."""

    async def send_forever() -> None:
        producer = await create_producer(settings.kafka, transactional_id=settings.reminders_transactional_id)
        try:
            sender = ReminderSender(runtime.pool, settings.kafka, producer, clock=clock)
            await sender.run_forever(settings.reminder_interval_seconds)
        finally:
            await producer.stop()

    return send_forever


def create_app(settings: MatchingSettings, clock: Clock | None = None) -> FastAPI:
    """``clock`` decides when reminders are due: tests pass one they move (or, for a process, its clock file)."""
    if clock is None:
        clock = file_clock(settings.clock_file) if settings.clock_file else system_clock
    runtime = ServiceRuntime(
        settings,
        name="matching",
        migrations=["services.matching"],
        topics=[*CONSUMED_TOPICS, NOTIFICATION_REQUESTED],
        consumer_groups=[settings.consumer_group],
        outbox=False,  # notification requests go out in Kafka transactions, not through the outbox
    )
    worker = MatchingWorker(runtime, settings, clock)

    async def start_worker(runtime: ServiceRuntime) -> None:
        log.info("matching instance %s starting", settings.instance_id)
        await worker.prepare()
        runtime.spawn(f"consumer:{settings.consumer_group}", worker.run)
        runtime.spawn("pruner", pruner(runtime, settings))
        runtime.spawn("reminders", reminder_sender(runtime, settings, clock))

    return create_service_app(
        runtime,
        title="Custody Watch matching",
        description="Matches custody changes to verified subscriptions and requests one notification per "
        "contact point, exactly once (Kafka transactions).",
        routers=[stats_router(runtime)],
        on_start=start_worker,
    )
