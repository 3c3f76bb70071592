"""Logging in and out of the dashboard."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.ops.auth.domain import SESSION_COOKIE, safe_next
from services.ops.auth.flows import log_in, log_out
from services.ops.deps import Context, CurrentOperator, require_csrf, session_operator
from services.ops.rendering import render

router = APIRouter(tags=["login"])


@router.get("/login", response_class=HTMLResponse, summary="The login page")
async def login_page(request: Request, context: Context, next: str | None = None) -> Response:
    if await session_operator(request, context):
        return RedirectResponse(safe_next(next), status_code=303)
    return render(request, "login.html", next=safe_next(next), error=None)


@router.post("/login", response_class=HTMLResponse, summary="Log in with username and password")
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
    outcome = await log_in(context.runtime.pool, settings, client=client, username=username, password=password)
    if outcome.wait_seconds is not None:
        refusal = render(
            request,
            "login.html",
            429,
            next=target,
            error=f"Too many failed logins from here. Try again in {outcome.wait_seconds} seconds.",
        )
        refusal.headers["Retry-After"] = str(outcome.wait_seconds)
        return refusal
    if outcome.session_id is None:
        return render(request, "login.html", 401, next=target, error="Wrong username or password.")
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        context.signer.sign(outcome.session_id),
        max_age=int(settings.session_hours * 3600),
        httponly=True,
        samesite="strict",
        secure=settings.cookie_secure,
        path="/",
    )
    return response


@router.post("/logout", summary="End this session")
async def logout(request: Request, context: Context, operator: CurrentOperator) -> Response:
    await require_csrf(request, operator)
    await log_out(context.runtime.pool, operator.session_id)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
