"""The dashboard: its page, the live sections an open page refreshes, its JSON, and matching's counts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from services.ops.clients.matching import MatchingCounts
from services.ops.dashboard.flows import build_dashboard
from services.ops.deps import Context, CurrentOperator, OpsContext
from services.ops.rendering import from_upstream, render
from services.ops.schemas import Dashboard

pages = APIRouter(tags=["pages"])
api = APIRouter(prefix="/api", tags=["api"])


async def dashboard_of(context: OpsContext) -> Dashboard:
    return await build_dashboard(context.runtime.pool, context.feed_monitor, context.pipeline, context.storms)


@pages.get("/", response_class=HTMLResponse, summary="The dashboard")
async def dashboard_page(request: Request, context: Context, operator: CurrentOperator) -> HTMLResponse:
    return render(
        request,
        "dashboard.html",
        operator=operator,
        d=await dashboard_of(context),
        refresh_ms=int(context.settings.refresh_seconds * 1000),
    )


@pages.get("/partials/live", response_class=HTMLResponse, summary="The dashboard's live sections")
async def live_partial(request: Request, context: Context, operator: CurrentOperator) -> HTMLResponse:
    return render(request, "live.html", operator=operator, d=await dashboard_of(context))


@api.get("/dashboard", summary="Everything the dashboard shows")
async def dashboard_json(context: Context, _: CurrentOperator) -> Dashboard:
    return await dashboard_of(context)


@api.get("/matching", summary="Matching's counts (subscriptions, contacts), for one agency or all")
async def matching_json(
    context: Context, _: CurrentOperator, agency_id: Annotated[str | None, Query(max_length=64)] = None
) -> MatchingCounts:
    return await from_upstream(context.matching.counts(agency_id))
