"""Pausing or resuming an agency's notices (admin), through ingest's admin API."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from services.ops import metrics
from services.ops.audit.flows import record_action
from services.ops.clients.ingest import IngestError
from services.ops.deps import Context, CurrentOperator, admin_action
from services.ops.feeds.flows import record_notices_paused
from services.ops.rendering import result

actions = APIRouter(prefix="/actions", tags=["actions"])


@actions.post("/agencies/{agency_id}/notices", summary="Pause or resume an agency's notices (admin)")
async def pause_notices(
    request: Request,
    context: Context,
    operator: CurrentOperator,
    agency_id: str,
    paused: Annotated[bool, Form()],
) -> Response:
    action = "pause_notices" if paused else "resume_notices"
    await admin_action(request, context, operator, action, agency_id)
    try:
        await context.ingest.set_notices_paused(agency_id, paused=paused)
    except IngestError as error:
        await record_action(
            context.runtime.pool, operator.username, action, agency_id, outcome="failed", detail={"why": str(error)}
        )
        return result(request, 502, f"Not changed: {error}")
    await record_notices_paused(context.runtime.pool, operator.username, action, agency_id, paused=paused)
    metrics.ADMIN_ACTIONS.labels(action, "ok").inc()
    verb = "paused" if paused else "resumed"
    return result(request, 200, f"Notices of {agency_id} {verb}.")
