"""An agency's contacts and referrals on the dashboard: shown to operators, replaced by an admin (CSRF-checked,
rate-limited, audited) through ingest's admin API, which publishes them to the portal and the notices."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from services.ops.audit.flows import record_action
from services.ops.auth.domain import Operator
from services.ops.clients.ingest import IngestError
from services.ops.deps import Context, CurrentOperator, OpsContext, PickedAgency, admin_action
from services.ops.rendering import audited_refusal, render_agency_page, upstream_status

pages = APIRouter(tags=["pages"])
actions = APIRouter(prefix="/actions", tags=["actions"])
ACTION = "replace_resources"
EMPTY: dict[str, list[Any]] = {"contacts": [], "referrals": []}


async def render_resources(
    request: Request,
    context: OpsContext,
    operator: Operator,
    agency_id: str,
    status_code: int = 200,
    *,
    message: str | None = None,
    tone: str = "ok",
    entered: str | None = None,
) -> HTMLResponse:
    async def read(problems: list[str]) -> dict[str, Any]:
        shown = entered
        if agency_id and shown is None:
            try:
                shown = json.dumps(await context.ingest.resources(agency_id), indent=2, ensure_ascii=False)
            except IngestError as error:
                problems.append(f"Resources of {agency_id} unavailable: {error}")
        return {"resources_json": shown or json.dumps(EMPTY, indent=2)}

    return await render_agency_page(
        request,
        context,
        operator,
        "resources.html",
        agency_id=agency_id,
        status_code=status_code,
        message=message,
        tone=tone,
        read=read,
    )


@pages.get("/resources", response_class=HTMLResponse, summary="An agency's contacts and referrals")
async def resources_page(
    request: Request,
    context: Context,
    operator: CurrentOperator,
    agency_id: PickedAgency,
) -> HTMLResponse:
    return await render_resources(request, context, operator, agency_id)


@actions.post("/resources", summary="Replace an agency's contacts and referrals (admin)")
async def replace_resources(
    request: Request,
    context: Context,
    operator: CurrentOperator,
    agency_id: Annotated[str, Form(max_length=100)],
    resources: Annotated[str, Form(max_length=60_000)],
) -> Response:
    agency_id = agency_id.strip()
    await admin_action(request, context, operator, ACTION, agency_id)
    try:
        body: Any = json.loads(resources)
    except json.JSONDecodeError as error:
        message = f"Not saved: the resources are not JSON ({error.msg}, line {error.lineno} column {error.colno})."
        return await render_resources(
            request, context, operator, agency_id, 422, message=message, tone="error", entered=resources
        )
    if not isinstance(body, dict):
        message = 'Not saved: give an object with "contacts" and "referrals".'
        return await render_resources(
            request, context, operator, agency_id, 422, message=message, tone="error", entered=resources
        )
    try:
        await context.ingest.replace_resources(agency_id, body)
    except IngestError as error:
        await audited_refusal(
            request, context, operator, action=ACTION, target=agency_id, error=error, verb="Not saved"
        )
        return await render_resources(
            request,
            context,
            operator,
            agency_id,
            upstream_status(error),
            message=f"Not saved by ingest: {error}",
            tone="error",
            entered=resources,
        )
    detail = {"contacts": len(body.get("contacts") or []), "referrals": len(body.get("referrals") or [])}
    await record_action(context.runtime.pool, operator.username, ACTION, agency_id, outcome="ok", detail=detail)
    message = f"Saved {detail['contacts']} contacts and {detail['referrals']} referrals of {agency_id}."
    return await render_resources(request, context, operator, agency_id, message=message)
