"""The audit log: who did what and when (page and JSON)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from services.ops.audit.domain import AuditEntry
from services.ops.audit.flows import recent_entries
from services.ops.deps import Context, CurrentOperator
from services.ops.rendering import render

pages = APIRouter(tags=["pages"])
api = APIRouter(prefix="/api", tags=["api"])


@pages.get("/audit", response_class=HTMLResponse, summary="Who did what and when")
async def audit_page(request: Request, context: Context, operator: CurrentOperator) -> HTMLResponse:
    return render(request, "audit.html", operator=operator, entries=await recent_entries(context.runtime.pool))


@api.get("/audit", summary="Who did what and when (newest first)")
async def audit_json(context: Context, _: CurrentOperator) -> list[AuditEntry]:
    return await recent_entries(context.runtime.pool)
