"""Operator overrides of custody status: the form and an agency's recent overrides, the agencies to pick from,
and sending an override to ingest (admin), which notifies like a feed record."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from services.ops import metrics
from services.ops.audit.flows import record_action
from services.ops.auth.domain import Operator
from services.ops.clients.base import explain_refusal
from services.ops.clients.ingest import IngestError
from services.ops.deps import Context, CurrentOperator, OpsContext, PickedAgency, admin_action
from services.ops.overrides.domain import (
    OVERRIDE_OUTCOMES,
    AgencyChoice,
    Override,
    OverrideInput,
    OverrideRefusedError,
    override_message,
    override_request,
)
from services.ops.rendering import (
    audited_refusal,
    from_upstream,
    render_agency_page,
    result,
    upstream_status,
    wants_page,
)
from services.ops.schemas import OverrideResult

pages = APIRouter(tags=["pages"])
api = APIRouter(prefix="/api", tags=["api"])
actions = APIRouter(prefix="/actions", tags=["actions"])


@pages.get("/overrides", response_class=HTMLResponse, summary="Operator overrides of custody status")
async def overrides_page(
    request: Request,
    context: Context,
    operator: CurrentOperator,
    agency_id: PickedAgency,
) -> HTMLResponse:
    return await render_overrides(request, context, operator, agency_id)


async def render_overrides(
    request: Request,
    context: OpsContext,
    operator: Operator,
    agency_id: str,
    status_code: int = 200,
    *,
    message: str | None = None,
    tone: str = "ok",
    entered: dict[str, str] | None = None,
) -> HTMLResponse:
    """The override form (admins), the agency's recent overrides and, after a POST, its outcome."""

    async def read(problems: list[str]) -> dict[str, Any]:
        overrides: list[Override] = []
        if agency_id:
            try:
                overrides = await context.ingest.overrides(agency_id)
            except IngestError as error:
                problems.append(f"Overrides of {agency_id} unavailable: {error}")
        return {"overrides": overrides, "outcomes": OVERRIDE_OUTCOMES, "entered": entered or {}}

    return await render_agency_page(
        request,
        context,
        operator,
        "overrides.html",
        agency_id=agency_id,
        status_code=status_code,
        message=message,
        tone=tone,
        read=read,
    )


@api.get("/agencies", summary="The agencies ingest knows (to pick one for an override)")
async def agencies_json(context: Context, _: CurrentOperator) -> list[AgencyChoice]:
    return await from_upstream(context.ingest.agencies())


@api.get("/agencies/{agency_id}/overrides", summary="An agency's operator overrides, newest first")
async def overrides_json(context: Context, _: CurrentOperator, agency_id: str) -> list[Override]:
    return await from_upstream(context.ingest.overrides(agency_id))


@actions.post("/overrides", summary="Set a subject's custody status by hand; notifies like a feed (admin)")
async def override_status(  # noqa: PLR0917 - one parameter per form field
    request: Request,
    context: Context,
    operator: CurrentOperator,
    agency_id: Annotated[str, Form(max_length=100)],
    identifier_kind: Annotated[str, Form(max_length=40)] = "",
    identifier: Annotated[str, Form(max_length=200)] = "",
    status: Annotated[str, Form(max_length=40)] = "",
    effective_local: Annotated[str, Form(max_length=100)] = "",
    utc_offset: Annotated[str, Form(max_length=20)] = "",
    court_date_local: Annotated[str, Form(max_length=100)] = "",
    release_reason: Annotated[str, Form(max_length=40)] = "",
    transfer_destination: Annotated[str, Form(max_length=1000)] = "",
    facility: Annotated[str, Form(max_length=1000)] = "",
    name: Annotated[str, Form(max_length=1000)] = "",
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    action = "override_status"
    agency_id = agency_id.strip()
    await admin_action(request, context, operator, action, agency_id)
    typed = {
        "agency_id": agency_id,
        "identifier_kind": identifier_kind,
        "identifier": identifier,
        "status": status,
        "effective_local": effective_local,
        "utc_offset": utc_offset,
        "court_date_local": court_date_local,
        "release_reason": release_reason,
        "transfer_destination": transfer_destination,
        "facility": facility,
        "name": name,
        "reason": reason,
    }

    async def refuse(status_code: int, message: str) -> Response:
        if wants_page(request):
            return await render_overrides(
                request, context, operator, agency_id, status_code, message=message, tone="error", entered=typed
            )
        return result(request, status_code, message)

    try:
        entered = OverrideInput.model_validate(typed | {"release_reason": release_reason.strip() or None})
    except ValidationError as error:
        return await refuse(422, f"Not sent: {explain_refusal(422, {'detail': error.errors()})}.")
    try:
        agency = await context.ingest.agency(agency_id)
        body = override_request(entered, operator=operator.username, zone_name=agency.timezone, now=datetime.now(UTC))
    except OverrideRefusedError as error:
        return await refuse(422, f"Not sent: {error}.")
    except IngestError as error:
        return await refuse(upstream_status(error), f"Not sent: {error}")
    try:
        override = await context.ingest.create_override(agency_id, body)
    except IngestError as error:
        detail = {"status": body["status"], "effective_at": body["effective_at"], "reason": body["reason"]}
        await audited_refusal(
            request, context, operator, action=action, target=agency_id, error=error, verb="Not recorded", detail=detail
        )
        return await refuse(upstream_status(error), f"Not recorded by ingest: {error}")
    await record_action(
        context.runtime.pool,
        operator.username,
        action,
        agency_id,
        outcome="ok",
        detail={
            "override_id": override.override_id,
            "subject_id": override.subject_id,
            "result": override.result,
            "event_id": override.event_id,
            "status": override.status,
            "effective_at": override.effective_at.isoformat(),
            entered.identifier_kind.value: entered.identifier,
            "reason": override.reason,
        },
    )
    metrics.OVERRIDES.labels(override.result).inc()
    message = override_message(override)
    if wants_page(request):
        tone = "ok" if override.result == "accepted" else "warn"
        return await render_overrides(request, context, operator, agency_id, 201, message=message, tone=tone)
    answer = OverrideResult(ok=override.result == "accepted", message=message, override=override)
    return Response(answer.model_dump_json(), status_code=201, media_type="application/json")
