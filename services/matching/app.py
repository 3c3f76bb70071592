"""The matching service: fans each custody change out to every reachable subscriber of the case, exactly once."""

from __future__ import annotations

import logging
from functools import partial

from fastapi import FastAPI

from services.matching.api import stats_router
from services.matching.clock import Clock, file_clock, system_clock
from services.matching.consumers import CONSUMED_TOPICS, PRODUCED_TOPICS, MatchingWorker
from services.matching.flows import prune_forever
from services.matching.reminders.flows import send_reminders_forever
from services.matching.settings import MatchingSettings
from shared.http import create_service_app
from shared.runtime import ServiceRuntime

log = logging.getLogger(__name__)


def create_app(settings: MatchingSettings, clock: Clock | None = None) -> FastAPI:
    """``clock`` decides when reminders are due: tests pass one they move (or, for a process, its clock file)."""
    if clock is None:
        clock = file_clock(settings.clock_file) if settings.clock_file else system_clock
    runtime = ServiceRuntime(
        settings,
        name="matching",
        migrations=["services.matching"],
        consumer_group=settings.consumer_group,
        consumed_topics=CONSUMED_TOPICS,
        produced_topics=PRODUCED_TOPICS,
        outbox=False,  # notification requests go out in Kafka transactions, not through the outbox
    )
    worker = MatchingWorker(runtime, settings, clock)

    async def start_worker(runtime: ServiceRuntime) -> None:
        log.info("matching instance %s starting", settings.instance_id)
        await worker.prepare()
        runtime.spawn(f"consumer:{settings.consumer_group}", worker.run)
        runtime.spawn("pruner", partial(prune_forever, runtime.pool, settings.retention_days))
        runtime.spawn(
            "reminders",
            partial(
                send_reminders_forever,
                runtime.pool,
                settings.kafka,
                transactional_id=settings.reminders_transactional_id,
                interval_seconds=settings.reminder_interval_seconds,
                clock=clock,
            ),
        )

    return create_service_app(
        runtime,
        title="Custody Watch matching",
        description="Matches custody changes to verified subscriptions and requests one notification per "
        "contact point, exactly once (Kafka transactions).",
        routers=[stats_router(settings.operator_token)],
        on_start=start_worker,
    )
