"""Matching's HTTP API: its work is on Kafka; operators get a privacy-safe view of its state."""

from __future__ import annotations

from fastapi import APIRouter

from services.matching import store
from services.matching.schemas import MatchingStats
from shared.runtime import ServiceRuntime


def stats_router(runtime: ServiceRuntime) -> APIRouter:
    router = APIRouter(prefix="/v1/matching", tags=["matching"])

    @router.get("/stats", summary="How many subscriptions, known subjects and notification requests matching holds")
    async def stats(agency_id: str | None = None) -> MatchingStats:
        async with runtime.pool.acquire() as connection:
            return MatchingStats.model_validate(await store.counts(connection, agency_id))

    return router
