"""The dashboard's pages, its JSON API and the admin actions; thin: authenticate, call the domain, render."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from services.ops import auth, metrics, store
from services.ops.auth import CSRF_FIELD, SESSION_COOKIE, NotAuthenticatedError, Operator
from services.ops.context import OpsContext, ops_context
from services.ops.dashboard import FAILED, build_dashboard, notification_detail, notification_summary
from services.ops.domain import ReplayRefusedError
from services.ops.feeds import IngestError
from services.ops.pipeline import AlreadyReplayedError, ReplayNotFoundError
from services.ops.schemas import ActionResult, AuditEntry, Dashboard, NotificationDetail, NotificationSummary

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
templates.env.globals["failed_statuses"] = FAILED
templates.env.globals["csrf_field"] = CSRF_FIELD

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
        failures = await store.recent_login_failures(connection, username, client, settings.login_window_seconds)
        if failures >= settings.login_max_failures:
            metrics.LOGINS.labels("rate_limited").inc()
            minutes = max(1, int(settings.login_window_seconds // 60))
            return render(
                request,
                "login.html",
                429,
                next=target,
                error=f"Too many failed logins. Try again in {minutes} minutes.",
            )
        role = await auth.authenticate(connection, username, password)
        await store.record_login_attempt(connection, username, client, succeeded=role is not None)
        if role is None:
            metrics.LOGINS.labels("failed").inc()
            return render(request, "login.html", 401, next=target, error="Wrong username or password.")
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
    dashboard = await build_dashboard(context.runtime.pool, context.feed_monitor, context.pipeline)
    return render(
        request,
        "dashboard.html",
        operator=operator,
        d=dashboard,
        refresh_ms=int(context.settings.refresh_seconds * 1000),
    )


@pages_router.get("/partials/live", response_class=HTMLResponse, summary="The dashboard's live sections")
async def live_partial(request: Request, context: Context, operator: CurrentOperator) -> HTMLResponse:
    dashboard = await build_dashboard(context.runtime.pool, context.feed_monitor, context.pipeline)
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
    results = []
    if query:
        async with context.runtime.pool.acquire() as connection:
            results = [notification_summary(row) for row in await store.search_notifications(connection, query)]
    return render(request, "search.html", operator=operator, q=query, results=results)


@pages_router.get("/notifications/{notification_id}", response_class=HTMLResponse, summary="One notice's history")
async def notification_page(
    request: Request, context: Context, operator: CurrentOperator, notification_id: str
) -> HTMLResponse:
    async with context.runtime.pool.acquire() as connection:
        detail = await notification_detail(connection, notification_id)
    if detail is None:
        raise HTTPException(status_code=404, detail=f"no notification {notification_id!r} has been seen")
    return render(request, "notification.html", operator=operator, detail=detail)


@pages_router.get("/audit", response_class=HTMLResponse, summary="Who did what and when")
async def audit_page(request: Request, context: Context, operator: CurrentOperator) -> HTMLResponse:
    return render(request, "audit.html", operator=operator, entries=await audit_entries(context))


async def audit_entries(context: OpsContext) -> list[AuditEntry]:
    async with context.runtime.pool.acquire() as connection:
        rows = await store.recent_audit(connection)
    return [AuditEntry.model_validate(dict(row)) for row in rows]


# --- JSON API ------------------------------------------------------------------------------------------------------

json_router = APIRouter(prefix="/api", tags=["api"])


@json_router.get("/dashboard", summary="Everything the dashboard shows")
async def dashboard_json(context: Context, _: CurrentOperator) -> Dashboard:
    return await build_dashboard(context.runtime.pool, context.feed_monitor, context.pipeline)


@json_router.get("/notifications", summary="Find notices by case, subscription or notice id")
async def search_json(
    context: Context, _: CurrentOperator, q: Annotated[str, Query(min_length=1, max_length=1000)]
) -> list[NotificationSummary]:
    query = checked_query(q)
    async with context.runtime.pool.acquire() as connection:
        return [notification_summary(row) for row in await store.search_notifications(connection, query)]


@json_router.get("/notifications/{notification_id}", summary="One notice's history")
async def notification_json(context: Context, _: CurrentOperator, notification_id: str) -> NotificationDetail:
    async with context.runtime.pool.acquire() as connection:
        detail = await notification_detail(connection, notification_id)
    if detail is None:
        raise HTTPException(status_code=404, detail=f"no notification {notification_id!r} has been seen")
    return detail


@json_router.get("/audit", summary="Who did what and when (newest first)")
async def audit_json(context: Context, _: CurrentOperator) -> list[AuditEntry]:
    return await audit_entries(context)


# --- Admin actions -------------------------------------------------------------------------------------------------

actions_router = APIRouter(prefix="/actions", tags=["actions"])


async def admin_only(context: OpsContext, operator: Operator, action: str, target: str) -> None:
    """Viewers are refused (and the attempt recorded); admins must carry the CSRF token."""
    if not operator.is_admin:
        async with context.runtime.pool.acquire() as connection:
            await store.audit(connection, operator.username, action, target, outcome="forbidden")
        metrics.ADMIN_ACTIONS.labels(action, "forbidden").inc()
    auth.require_admin(operator)


def result(request: Request, status_code: int, message: str) -> Response:
    if "text/html" in request.headers.get("accept", ""):
        return render(request, "result.html", status_code, ok=status_code < 300, message=message)
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


def login_redirect(request: Request) -> Response:
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(path, safe='')}", status_code=303)
