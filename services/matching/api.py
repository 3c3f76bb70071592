"""Matching's HTTP API: its work is on Kafka; operators (with matching's operator token) get a view of its state.

The counts are per agency and move when one person registers, so they are for operators only: an agency, or the
person in custody, must not learn from them that someone subscribed.
"""

from __future__ import annotations

from fastapi import APIRouter

from services.matching import store
from services.matching.schemas import MatchingStats
from shared.http import operator_token_guard
from shared.runtime import ServiceRuntime
from shared.settings import OperatorTokenSettings


def stats_router(runtime: ServiceRuntime) -> APIRouter:
    settings = runtime.settings
    if not isinstance(settings, OperatorTokenSettings):
        raise TypeError("matching's stats need settings with an operator token")
    router = APIRouter(
        prefix="/v1/matching", tags=["matching"], dependencies=[operator_token_guard(settings.operator_token)]
    )

    @router.get("/stats", summary="How many subscriptions, known subjects and notification requests matching holds")
    async def stats(agency_id: str | None = None) -> MatchingStats:
        async with runtime.pool.acquire() as connection:
            return MatchingStats.model_validate(await store.counts(connection, agency_id))

    return router
