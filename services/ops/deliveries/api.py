"""Notices: search, one notice's history (page and JSON), and blocking a notice delivery still holds (admin)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response

from services.ops.audit.domain import DecisionRefusedError, decision_reason
from services.ops.audit.flows import record_action
from services.ops.clients.base import UpstreamError
from services.ops.deliveries.domain import BLOCK_ACTION, block_outcome
from services.ops.deliveries.flows import find_notification, search_notices
from services.ops.deps import Context, CurrentOperator, OpsContext, admin_action
from services.ops.rendering import audited_refusal, render, result
from services.ops.schemas import NotificationDetail, NotificationSummary

MAX_QUERY = 200

pages = APIRouter(tags=["pages"])
api = APIRouter(prefix="/api", tags=["api"])
actions = APIRouter(prefix="/actions", tags=["actions"])


def checked_query(q: str) -> str:
    query = q.strip()
    if len(query) > MAX_QUERY:
        raise HTTPException(status_code=400, detail=f"search text longer than {MAX_QUERY} characters")
    return query


async def notification_or_404(context: OpsContext, notification_id: str) -> NotificationDetail:
    try:
        return await find_notification(context.runtime.pool, context.delivery, notification_id)
    except LookupError:
        raise HTTPException(status_code=404, detail=f"no notification {notification_id!r} has been seen") from None


@pages.get("/search", response_class=HTMLResponse, summary="Find notices by case, subscription or notice id")
async def search_page(
    request: Request, context: Context, operator: CurrentOperator, q: Annotated[str, Query(max_length=1000)] = ""
) -> HTMLResponse:
    query = checked_query(q)
    results = await search_notices(context.runtime.pool, context.delivery, query) if query else []
    return render(request, "search.html", operator=operator, q=query, results=results)


@pages.get("/notifications/{notification_id}", response_class=HTMLResponse, summary="One notice's history")
async def notification_page(
    request: Request, context: Context, operator: CurrentOperator, notification_id: str
) -> HTMLResponse:
    detail = await notification_or_404(context, notification_id)
    return render(request, "notification.html", operator=operator, detail=detail)


@api.get("/notifications", summary="Find notices by case, subscription or notice id")
async def search_json(
    context: Context, _: CurrentOperator, q: Annotated[str, Query(min_length=1, max_length=1000)]
) -> list[NotificationSummary]:
    return await search_notices(context.runtime.pool, context.delivery, checked_query(q))


@api.get("/notifications/{notification_id}", summary="One notice's history")
async def notification_json(context: Context, _: CurrentOperator, notification_id: str) -> NotificationDetail:
    return await notification_or_404(context, notification_id)


@actions.post("/notifications/{notification_id}/block", summary="Block a pending notice: no further attempts (admin)")
async def block_notice(
    request: Request,
    context: Context,
    operator: CurrentOperator,
    notification_id: str,
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    back = f"/notifications/{quote(notification_id, safe='')}"
    await admin_action(request, context, operator, BLOCK_ACTION, notification_id)
    try:
        why = decision_reason(reason, what="blocking the notice")
    except DecisionRefusedError as error:
        return result(request, 422, f"Not blocked: {error}.", back=back)
    try:
        notice = await context.delivery.stop_notification(notification_id)
    except UpstreamError as error:
        return await audited_refusal(
            request,
            context,
            operator,
            action=BLOCK_ACTION,
            target=notification_id,
            error=error,
            verb="Not blocked",
            detail={"reason": why},
            back=back,
        )
    blocked, message = block_outcome(notice)
    await record_action(
        context.runtime.pool,
        operator.username,
        BLOCK_ACTION,
        notification_id,
        outcome="ok" if blocked else "refused",
        detail={"reason": why, "message": message, "delivery_outcome": notice.outcome},
    )
    return result(request, 200 if blocked else 409, message, back=back)
