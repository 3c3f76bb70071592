"""Matching's HTTP API: its work is on Kafka; operators (with matching's operator token) get a view of its state.

The counts are per agency and move when one person registers, so they are for operators only: an agency, or the
person in custody, must not learn from them that someone subscribed.
"""

from __future__ import annotations

from fastapi import APIRouter

from services.matching.deps import Db
from services.matching.schemas import MatchingStats
from services.matching.store.stats import counts
from shared.http import operator_token_guard


def stats_router(operator_token: str) -> APIRouter:
    router = APIRouter(prefix="/v1/matching", tags=["matching"], dependencies=[operator_token_guard(operator_token)])

    @router.get("/stats", summary="How many subscriptions, known subjects and notification requests matching holds")
    async def stats(connection: Db, agency_id: str | None = None) -> MatchingStats:
        return MatchingStats.model_validate(await counts(connection, agency_id))

    return router
