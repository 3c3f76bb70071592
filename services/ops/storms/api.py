"""Held storms: ingest's storm holds as JSON, and an admin's release or discard."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from services.ops.audit.domain import DecisionRefusedError, decision_reason
from services.ops.clients.ingest import IngestError
from services.ops.deps import Context, CurrentOperator, admin_action
from services.ops.rendering import audited_refusal, from_upstream, result
from services.ops.storms.domain import HoldState, StormHold, hold_discarded_message, hold_released_message
from services.ops.storms.flows import record_decision

api = APIRouter(prefix="/api", tags=["api"])
actions = APIRouter(prefix="/actions", tags=["actions"])


@api.get("/storm-holds", summary="Storm holds from ingest, newest first (at most 100)")
async def storm_holds_json(context: Context, _: CurrentOperator, state: HoldState | None = None) -> list[StormHold]:
    return await from_upstream(context.ingest.storm_holds(state))


@api.get("/storm-holds/{hold_id}", summary="One storm hold")
async def storm_hold_json(context: Context, _: CurrentOperator, hold_id: str) -> StormHold:
    return await from_upstream(context.ingest.storm_hold(hold_id))


@actions.post("/storm-holds/{hold_id}/release", summary="Release a held storm: every change is published (admin)")
async def release_storm_hold(request: Request, context: Context, operator: CurrentOperator, hold_id: str) -> Response:
    action = "release_storm_hold"
    await admin_action(request, context, operator, action, hold_id)
    try:
        hold = await context.ingest.release_storm_hold(hold_id, operator=operator.username)
    except IngestError as error:
        return await audited_refusal(
            request, context, operator, action=action, target=hold_id, error=error, verb="Not released"
        )
    await record_decision(context.runtime.pool, context.storms, operator.username, action, hold)
    return result(request, 200, hold_released_message(hold))


@actions.post(
    "/storm-holds/{hold_id}/discard", summary="Discard a held storm: nothing is published, with a reason (admin)"
)
async def discard_storm_hold(
    request: Request,
    context: Context,
    operator: CurrentOperator,
    hold_id: str,
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    action = "discard_storm_hold"
    await admin_action(request, context, operator, action, hold_id)
    try:
        why = decision_reason(reason, what="discarding the held changes")
    except DecisionRefusedError as error:
        return result(request, 422, f"Not discarded: {error}.")
    try:
        hold = await context.ingest.discard_storm_hold(hold_id, operator=operator.username, reason=why)
    except IngestError as error:
        return await audited_refusal(
            request,
            context,
            operator,
            action=action,
            target=hold_id,
            error=error,
            verb="Not discarded",
            detail={"reason": why},
        )
    await record_decision(context.runtime.pool, context.storms, operator.username, action, hold, reason=why)
    return result(request, 200, hold_discarded_message(hold))
