"""Admin routes of storm holds: see them, and release or discard one."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query

from services.ingest.deps import ADMIN, ADMIN_ONLY, Pool, Settings
from services.ingest.storm_holds import flows, store
from services.ingest.storm_holds.schemas import HoldDiscard, HoldRelease, StormHoldOut
from services.ingest.storm_holds.store import StormHold

router = APIRouter(prefix=ADMIN, tags=["administration"], dependencies=ADMIN_ONLY)


@router.get("/storm-holds", summary="Storm holds, newest first", response_model=list[StormHoldOut])
async def list_storm_holds(
    pool: Pool, state: Annotated[Literal["holding", "released", "discarded"] | None, Query()] = None
) -> list[StormHold]:
    async with pool.acquire() as connection:
        return await store.list_holds(connection, state)


@router.get("/storm-holds/{hold_id}", summary="One storm hold", response_model=StormHoldOut)
async def get_storm_hold(hold_id: uuid.UUID, pool: Pool) -> StormHold:
    async with pool.acquire() as connection:
        hold = await store.get_hold(connection, str(hold_id))
    if hold is None:
        raise HTTPException(404, f"no storm hold {hold_id}")
    return hold


async def _decide(
    pool: Pool, settings: Settings, hold_id: uuid.UUID, *, release: bool, operator: str, reason: str | None
) -> StormHold:
    try:
        return await flows.decide(pool, settings, str(hold_id), release=release, operator=operator, reason=reason)
    except flows.HoldNotFoundError:
        raise HTTPException(404, f"no storm hold {hold_id}") from None
    except flows.HoldDecidedError as decided:
        raise HTTPException(409, str(decided)) from None


@router.post(
    "/storm-holds/{hold_id}/release",
    summary="Release a storm hold: every held change is published, in feed order, and notifies",
    response_model=StormHoldOut,
)
async def release_storm_hold(hold_id: uuid.UUID, body: HoldRelease, pool: Pool, settings: Settings) -> StormHold:
    return await _decide(pool, settings, hold_id, release=True, operator=body.operator, reason=None)


@router.post(
    "/storm-holds/{hold_id}/discard",
    summary="Discard a storm hold: no held change is published; the subjects go back to their state before it",
    response_model=StormHoldOut,
)
async def discard_storm_hold(hold_id: uuid.UUID, body: HoldDiscard, pool: Pool, settings: Settings) -> StormHold:
    return await _decide(pool, settings, hold_id, release=False, operator=body.operator, reason=body.reason)
