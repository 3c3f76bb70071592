"""The dashboard's pages, its JSON API and the admin actions; thin: authenticate, call the domain, render."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from services.ops import auth, metrics, store
from services.ops.auth import CSRF_FIELD, SESSION_COOKIE, NotAuthenticatedError, Operator
from services.ops.clients import IngestError, MatchingError, UpstreamError
from services.ops.context import OpsContext, ops_context
from services.ops.dashboard import (
    BLOCK_ACTION,
    FAILED,
    build_dashboard,
    notification_detail,
    notification_summary,
    pending_summary,
)
from services.ops.domain import (
    OVERRIDE_OUTCOMES,
    AgencyChoice,
    DecisionRefusedError,
    HoldState,
    MatchingCounts,
    Override,
    OverrideInput,
    OverrideRefusedError,
    ReplayRefusedError,
    StormHold,
    block_outcome,
    decision_reason,
    explain_refusal,
    hold_discarded_message,
    hold_released_message,
    override_message,
    override_request,
)
from services.ops.pipeline import AlreadyReplayedError, ReplayNotFoundError
from services.ops.schemas import (
    ActionResult,
    AuditEntry,
    Dashboard,
    NotificationDetail,
    NotificationSummary,
    OverrideResult,
)
from shared.vocabulary import CustodyStatus, IdentifierKind, ReleaseReason

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
templates.env.globals["failed_statuses"] = FAILED
templates.env.globals["csrf_field"] = CSRF_FIELD
templates.env.globals["custody_statuses"] = [status.value for status in CustodyStatus]
templates.env.globals["release_reasons"] = [reason.value for reason in ReleaseReason]
templates.env.globals["identifier_kinds"] = [kind.value for kind in IdentifierKind]
# A notice in one of these states has ended: nothing left to block.
templates.env.globals["ended_statuses"] = {"delivered", "permanent-failure"}

Context = Annotated[OpsContext, Depends(ops_context)]
MAX_QUERY = 200


async def current_operator(request: Request, context: Context) -> Operator:
    async with context.runtime.pool.acquire() as connection:
        operator = await auth.load_operator(connection, context.signer, request.cookies.get(SESSION_COOKIE))
    if operator is None:
        raise NotAuthenticatedError
    return operator


CurrentOperator = Annotated[Operator, Depends(current_operator)]


def safe_next(target: str | None) -> str:
    """Only a path on this site: never an open redirect to another host."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def render(request: Request, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, template, values, status_code=status_code)


# --- Login ---------------------------------------------------------------------------------------------------------

log = logging.getLogger(__name__)

login_router = APIRouter(tags=["login"])


@login_router.get("/login", response_class=HTMLResponse, summary="The login page")
async def login_page(request: Request, context: Context, next: str | None = None) -> Response:
    async with context.runtime.pool.acquire() as connection:
        if await auth.load_operator(connection, context.signer, request.cookies.get(SESSION_COOKIE)):
            return RedirectResponse(safe_next(next), status_code=303)
    return render(request, "login.html", next=safe_next(next), error=None)


@login_router.post("/login", response_class=HTMLResponse, summary="Log in with username and password")
async def login(
    request: Request,
    context: Context,
    username: Annotated[str, Form(max_length=100)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    settings = context.settings
    target = safe_next(next)
    username = username.strip()
    if not username or not password:
        return render(request, "login.html", 400, next=target, error="Enter your username and password.")
    client = request.client.host if request.client else "unknown"
    async with context.runtime.pool.acquire() as connection:
        wait_if_wrong = await store.claim_login_try(connection, client, username, settings.login_throttle)
        if wait_if_wrong is None:
            metrics.LOGINS.labels("rate_limited").inc()
            wait = math.ceil(await store.login_wait_seconds(connection, client, username))
            refusal = render(
                request,
                "login.html",
                429,
                next=target,
                error=f"Too many failed logins from here. Try again in {wait} seconds.",
            )
            refusal.headers["Retry-After"] = str(wait)
            return refusal
        role = await auth.authenticate(connection, username, password)
        await store.record_login_attempt(connection, username, client, succeeded=role is not None)
        if role is None:
            metrics.LOGINS.labels("failed").inc()
            if wait_if_wrong > 0:
                metrics.LOGIN_LOCKOUTS.inc()
                detail = {"client": client, "wait_seconds": round(wait_if_wrong)}
                await store.audit(connection, username, "login", username, outcome="throttled", detail=detail)
            return render(request, "login.html", 401, next=target, error="Wrong username or password.")
        await store.forget_login_failures(connection, client, username)
        session_id, _ = await auth.start_session(connection, username, settings)
        await store.audit(connection, username, "login", username, outcome="ok", detail={"client": client})
    metrics.LOGINS.labels("ok").inc()
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        context.signer.sign(session_id),
        max_age=int(settings.session_hours * 3600),
        httponly=True,
        samesite="strict",
        secure=settings.cookie_secure,
        path="/",
    )
    return response


@login_router.post("/logout", summary="End this session")
async def logout(request: Request, context: Context, operator: CurrentOperator) -> Response:
    await auth.require_csrf(request, operator)
    async with context.runtime.pool.acquire() as connection:
        await store.end_session(connection, operator.session_id)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# --- Pages ---------------------------------------------------------------------------------------------------------

pages_router = APIRouter(tags=["pages"])


@pages_router.get("/", response_class=HTMLResponse, summary="The dashboard")
async def dashboard_page(request: Request, context: Context, operator: CurrentOperator) -> HTMLResponse:
    dashboard = await build_dashboard(context.runtime.pool, context.feed_monitor, context.pipeline, context.storms)
    return render(
        request,
        "dashboard.html",
        operator=operator,
        d=dashboard,
        refresh_ms=int(context.settings.refresh_seconds * 1000),
    )


@pages_router.get("/partials/live", response_class=HTMLResponse, summary="The dashboard's live sections")
async def live_partial(request: Request, context: Context, operator: CurrentOperator) -> HTMLResponse:
    dashboard = await build_dashboard(context.runtime.pool, context.feed_monitor, context.pipeline, context.storms)
    return render(request, "live.html", operator=operator, d=dashboard)


def checked_query(q: str) -> str:
    query = q.strip()
    if len(query) > MAX_QUERY:
        raise HTTPException(status_code=400, detail=f"search text longer than {MAX_QUERY} characters")
    return query


@pages_router.get("/search", response_class=HTMLResponse, summary="Find notices by case, subscription or notice id")
async def search_page(
    request: Request, context: Context, operator: CurrentOperator, q: Annotated[str, Query(max_length=1000)] = ""
) -> HTMLResponse:
    query = checked_query(q)
    results = await search_notices(context, query) if query else []
    return render(request, "search.html", operator=operator, q=query, results=results)


async def search_notices(context: OpsContext, query: str) -> list[NotificationSummary]:
    """Notices ops saw handed off, then those of the case delivery still holds (so they can be blocked)."""
    async with context.runtime.pool.acquire() as connection:
        seen = [notification_summary(row) for row in await store.search_notifications(connection, query)]
    try:
        pending = await context.delivery.pending_notices(query)
    except UpstreamError as error:
        log.warning("pending notices unavailable: %s", error)
        pending = []
    known = {summary.notification_id for summary in seen}
    return seen + [pending_summary(notice) for notice in pending if notice.notification_id not in known]


async def find_notification(context: OpsContext, notification_id: str) -> NotificationDetail:
    async with context.runtime.pool.acquire() as connection:
        detail = await notification_detail(connection, notification_id)
    if detail is None:
        try:
            pending = await context.delivery.notice(notification_id)
        except UpstreamError:
            pending = None
        async with context.runtime.pool.acquire() as connection:
            detail = await notification_detail(connection, notification_id, pending)
    if detail is None:
        raise HTTPException(status_code=404, detail=f"no notification {notification_id!r} has been seen")
    return detail


@pages_router.get("/notifications/{notification_id}", response_class=HTMLResponse, summary="One notice's history")
async def notification_page(
    request: Request, context: Context, operator: CurrentOperator, notification_id: str
) -> HTMLResponse:
    detail = await find_notification(context, notification_id)
    return render(request, "notification.html", operator=operator, detail=detail)


@pages_router.get("/audit", response_class=HTMLResponse, summary="Who did what and when")
async def audit_page(request: Request, context: Context, operator: CurrentOperator) -> HTMLResponse:
    return render(request, "audit.html", operator=operator, entries=await audit_entries(context))


@pages_router.get("/overrides", response_class=HTMLResponse, summary="Operator overrides of custody status")
async def overrides_page(
    request: Request,
    context: Context,
    operator: CurrentOperator,
    agency_id: Annotated[str, Query(max_length=100)] = "",
) -> HTMLResponse:
    return await render_overrides(request, context, operator, agency_id.strip())


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
    agencies: list[AgencyChoice] = []
    overrides: list[Override] = []
    problems = []
    try:
        agencies = await context.ingest.agencies()
    except IngestError as error:
        problems.append(f"Agencies unavailable: {error}")
    if agency_id:
        try:
            overrides = await context.ingest.overrides(agency_id)
        except IngestError as error:
            problems.append(f"Overrides of {agency_id} unavailable: {error}")
    return render(
        request,
        "overrides.html",
        status_code,
        operator=operator,
        agencies=agencies,
        agency_id=agency_id,
        overrides=overrides,
        outcomes=OVERRIDE_OUTCOMES,
        problems=problems,
        message=message,
        tone=tone,
        entered=entered or {},
    )


async def audit_entries(context: OpsContext) -> list[AuditEntry]:
    async with context.runtime.pool.acquire() as connection:
        rows = await store.recent_audit(connection)
    return [AuditEntry.model_validate(dict(row)) for row in rows]


# --- JSON API ------------------------------------------------------------------------------------------------------

json_router = APIRouter(prefix="/api", tags=["api"])


@json_router.get("/dashboard", summary="Everything the dashboard shows")
async def dashboard_json(context: Context, _: CurrentOperator) -> Dashboard:
    return await build_dashboard(context.runtime.pool, context.feed_monitor, context.pipeline, context.storms)


@json_router.get("/notifications", summary="Find notices by case, subscription or notice id")
async def search_json(
    context: Context, _: CurrentOperator, q: Annotated[str, Query(min_length=1, max_length=1000)]
) -> list[NotificationSummary]:
    return await search_notices(context, checked_query(q))


@json_router.get("/notifications/{notification_id}", summary="One notice's history")
async def notification_json(context: Context, _: CurrentOperator, notification_id: str) -> NotificationDetail:
    return await find_notification(context, notification_id)


def upstream_status(error: UpstreamError) -> int:
    """The other service's refusal passed on (400/404/409/422); anything else is a bad gateway."""
    return error.status if error.status in {400, 404, 409, 422} else 502


T = TypeVar("T")


async def from_ingest(answer: Awaitable[T]) -> T:
    """Ingest's answer, or its refusal as the HTTP status it maps to."""
    try:
        return await answer
    except IngestError as error:
        raise HTTPException(status_code=upstream_status(error), detail=f"ingest: {error}") from None


@json_router.get("/storm-holds", summary="Storm holds from ingest, newest first (at most 100)")
async def storm_holds_json(context: Context, _: CurrentOperator, state: HoldState | None = None) -> list[StormHold]:
    return await from_ingest(context.ingest.storm_holds(state))


@json_router.get("/storm-holds/{hold_id}", summary="One storm hold")
async def storm_hold_json(context: Context, _: CurrentOperator, hold_id: str) -> StormHold:
    return await from_ingest(context.ingest.storm_hold(hold_id))


@json_router.get("/agencies", summary="The agencies ingest knows (to pick one for an override)")
async def agencies_json(context: Context, _: CurrentOperator) -> list[AgencyChoice]:
    return await from_ingest(context.ingest.agencies())


@json_router.get("/agencies/{agency_id}/overrides", summary="An agency's operator overrides, newest first")
async def overrides_json(context: Context, _: CurrentOperator, agency_id: str) -> list[Override]:
    return await from_ingest(context.ingest.overrides(agency_id))


@json_router.get("/matching", summary="Matching's counts (subscriptions, contacts), for one agency or all")
async def matching_json(
    context: Context, _: CurrentOperator, agency_id: Annotated[str | None, Query(max_length=64)] = None
) -> MatchingCounts:
    try:
        return await context.matching.counts(agency_id)
    except MatchingError as error:
        raise HTTPException(status_code=upstream_status(error), detail=f"matching: {error}") from None


@json_router.get("/audit", summary="Who did what and when (newest first)")
async def audit_json(context: Context, _: CurrentOperator) -> list[AuditEntry]:
    return await audit_entries(context)


# --- Admin actions -------------------------------------------------------------------------------------------------

actions_router = APIRouter(prefix="/actions", tags=["actions"])


async def admin_only(context: OpsContext, operator: Operator, action: str, target: str) -> None:
    """Viewers are refused and admins rate-limited (each refusal recorded); the CSRF token is checked before."""
    settings = context.settings
    if not operator.is_admin:
        async with context.runtime.pool.acquire() as connection:
            await store.audit(connection, operator.username, action, target, outcome="forbidden")
        metrics.ADMIN_ACTIONS.labels(action, "forbidden").inc()
    auth.require_admin(operator)
    async with context.runtime.pool.acquire() as connection:
        recent = await store.recent_admin_actions(connection, operator.username, settings.admin_action_window_seconds)
        if recent < settings.admin_action_limit:
            return
        await store.audit(connection, operator.username, action, target, outcome="rate_limited")
    metrics.ADMIN_ACTIONS.labels(action, "rate_limited").inc()
    raise HTTPException(
        status_code=429,
        detail=f"too many admin actions: at most {settings.admin_action_limit} in"
        f" {settings.admin_action_window_seconds:g} s; wait a moment and try again",
    )


async def audited_refusal(
    request: Request,
    context: OpsContext,
    operator: Operator,
    *,
    action: str,
    target: str,
    error: UpstreamError,
    verb: str,
    detail: dict[str, Any] | None = None,
    back: str = "/",
) -> Response:
    """Another service refused or could not be reached: record it and tell the operator in its words."""
    status_code = upstream_status(error)
    outcome = "refused" if status_code < 500 else "failed"
    async with context.runtime.pool.acquire() as connection:
        await store.audit(
            connection, operator.username, action, target, outcome=outcome, detail=(detail or {}) | {"why": str(error)}
        )
    metrics.ADMIN_ACTIONS.labels(action, outcome).inc()
    return result(request, status_code, f"{verb}: {error}", back=back)


def wants_page(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def result(request: Request, status_code: int, message: str, *, back: str = "/") -> Response:
    if wants_page(request):
        return render(request, "result.html", status_code, ok=status_code < 300, message=message, back=back)
    return Response(
        ActionResult(ok=status_code < 300, message=message).model_dump_json(),
        status_code=status_code,
        media_type="application/json",
    )


@actions_router.post("/replay", summary="Re-publish one dead letter to its original topic (admin)")
async def replay(
    request: Request,
    context: Context,
    operator: CurrentOperator,
    *,
    topic: Annotated[str, Form(max_length=300)],
    partition: Annotated[int, Form(ge=0)],
    offset: Annotated[int, Form(ge=0)],
) -> Response:
    target = f"{topic}:{partition}:{offset}"
    await auth.require_csrf(request, operator)
    await admin_only(context, operator, "replay_dead_letter", target)
    try:
        sent_to = await context.pipeline.replay(
            context.runtime.pool,
            context.runtime.producer,
            dlq_topic=topic,
            partition=partition,
            offset=offset,
            username=operator.username,
        )
    except (ReplayRefusedError, ReplayNotFoundError, AlreadyReplayedError) as error:
        status = (
            400 if isinstance(error, ReplayRefusedError) else 404 if isinstance(error, ReplayNotFoundError) else 409
        )
        async with context.runtime.pool.acquire() as connection:
            await store.audit(
                connection,
                operator.username,
                "replay_dead_letter",
                target,
                outcome="refused",
                detail={"why": str(error)},
            )
        metrics.ADMIN_ACTIONS.labels("replay_dead_letter", "refused").inc()
        return result(request, status, f"Not replayed: {error}")
    metrics.ADMIN_ACTIONS.labels("replay_dead_letter", "ok").inc()
    return result(request, 200, f"Replayed {topic} partition {partition} offset {offset} to {sent_to}.")


@actions_router.post("/agencies/{agency_id}/notices", summary="Pause or resume an agency's notices (admin)")
async def pause_notices(
    request: Request,
    context: Context,
    operator: CurrentOperator,
    agency_id: str,
    paused: Annotated[bool, Form()],
) -> Response:
    action = "pause_notices" if paused else "resume_notices"
    await auth.require_csrf(request, operator)
    await admin_only(context, operator, action, agency_id)
    try:
        await context.ingest.set_notices_paused(agency_id, paused=paused)
    except IngestError as error:
        async with context.runtime.pool.acquire() as connection:
            await store.audit(
                connection, operator.username, action, agency_id, outcome="failed", detail={"why": str(error)}
            )
        metrics.ADMIN_ACTIONS.labels(action, "failed").inc()
        return result(request, 502, f"Not changed: {error}")
    async with context.runtime.pool.acquire() as connection, connection.transaction():
        await store.set_feed_paused(connection, agency_id, paused=paused)
        await store.audit(connection, operator.username, action, agency_id, outcome="ok")
    metrics.ADMIN_ACTIONS.labels(action, "ok").inc()
    verb = "paused" if paused else "resumed"
    return result(request, 200, f"Notices of {agency_id} {verb}.")


@actions_router.post(
    "/storm-holds/{hold_id}/release", summary="Release a held storm: every change is published (admin)"
)
async def release_storm_hold(request: Request, context: Context, operator: CurrentOperator, hold_id: str) -> Response:
    action = "release_storm_hold"
    await auth.require_csrf(request, operator)
    await admin_only(context, operator, action, hold_id)
    try:
        hold = await context.ingest.release_storm_hold(hold_id, operator=operator.username)
    except IngestError as error:
        return await audited_refusal(
            request, context, operator, action=action, target=hold_id, error=error, verb="Not released"
        )
    await record_decision(context, operator, action, hold)
    return result(request, 200, hold_released_message(hold))


@actions_router.post(
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
    await auth.require_csrf(request, operator)
    await admin_only(context, operator, action, hold_id)
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
    await record_decision(context, operator, action, hold, reason=why)
    return result(request, 200, hold_discarded_message(hold))


async def record_decision(
    context: OpsContext, operator: Operator, action: str, hold: StormHold, *, reason: str | None = None
) -> None:
    """Audit a storm decision and refresh the held storms at once, so the page shows it decided."""
    detail: dict[str, Any] = {
        "agency_id": hold.agency_id,
        "held_changes": hold.held_changes,
        "urgent_changes": hold.urgent_changes,
        "state": hold.state.value,
    }
    if reason is not None:
        detail["reason"] = reason
    async with context.runtime.pool.acquire() as connection:
        await store.audit(connection, operator.username, action, hold.hold_id, outcome="ok", detail=detail)
    metrics.ADMIN_ACTIONS.labels(action, "ok").inc()
    await context.storms.check_once()


@actions_router.post("/overrides", summary="Set a subject's custody status by hand; notifies like a feed (admin)")
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
    await auth.require_csrf(request, operator)
    await admin_only(context, operator, action, agency_id)
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
    async with context.runtime.pool.acquire() as connection:
        await store.audit(
            connection,
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
    metrics.ADMIN_ACTIONS.labels(action, "ok").inc()
    metrics.OVERRIDES.labels(override.result).inc()
    message = override_message(override)
    if wants_page(request):
        tone = "ok" if override.result == "accepted" else "warn"
        return await render_overrides(request, context, operator, agency_id, 201, message=message, tone=tone)
    answer = OverrideResult(ok=override.result == "accepted", message=message, override=override)
    return Response(answer.model_dump_json(), status_code=201, media_type="application/json")


@actions_router.post(
    "/notifications/{notification_id}/block", summary="Block a pending notice: no further attempts (admin)"
)
async def block_notice(
    request: Request,
    context: Context,
    operator: CurrentOperator,
    notification_id: str,
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    back = f"/notifications/{quote(notification_id, safe='')}"
    await auth.require_csrf(request, operator)
    await admin_only(context, operator, BLOCK_ACTION, notification_id)
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
    outcome = "ok" if blocked else "refused"
    async with context.runtime.pool.acquire() as connection:
        await store.audit(
            connection,
            operator.username,
            BLOCK_ACTION,
            notification_id,
            outcome=outcome,
            detail={"reason": why, "message": message, "delivery_outcome": notice.outcome},
        )
    metrics.ADMIN_ACTIONS.labels(BLOCK_ACTION, outcome).inc()
    return result(request, 200 if blocked else 409, message, back=back)


def login_redirect(request: Request) -> Response:
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(path, safe='')}", status_code=303)
