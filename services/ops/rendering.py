"""How the ops service answers: its pages (jinja templates), an action's result as a page or JSON, another
service's refusal passed on, and the error pages. Every word an operator reads is in ``templates/``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.ops.audit.flows import record_action
from services.ops.auth.domain import CSRF_FIELD, Operator
from services.ops.clients.base import UpstreamError
from services.ops.deliveries.domain import ENDED_STATUSES, FAILED
from services.ops.deps import NotAuthenticatedError, OpsContext
from services.ops.overrides.flows import agency_choices
from services.ops.schemas import ActionResult
from shared.vocabulary import CustodyStatus, IdentifierKind, ReleaseReason

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
templates.env.globals["failed_statuses"] = FAILED
templates.env.globals["csrf_field"] = CSRF_FIELD
templates.env.globals["custody_statuses"] = [status.value for status in CustodyStatus]
templates.env.globals["release_reasons"] = [reason.value for reason in ReleaseReason]
templates.env.globals["identifier_kinds"] = [kind.value for kind in IdentifierKind]
templates.env.globals["ended_statuses"] = ENDED_STATUSES

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

T = TypeVar("T")


def render(request: Request, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, template, values, status_code=status_code)


async def render_agency_page(
    request: Request,
    context: OpsContext,
    operator: Operator,
    template: str,
    *,
    agency_id: str,
    status_code: int,
    message: str | None,
    tone: str,
    read: Callable[[list[str]], Awaitable[dict[str, Any]]],
) -> HTMLResponse:
    """A page about the agency picked from ingest's list: ``read`` gives the page's own values, noting on the page
    (after a problem with the list) what it could not read."""
    problems: list[str] = []
    agencies = await agency_choices(context.ingest, problems)
    values = await read(problems)
    return render(
        request,
        template,
        status_code,
        operator=operator,
        agencies=agencies,
        agency_id=agency_id,
        problems=problems,
        message=message,
        tone=tone,
        **values,
    )


def wants_page(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and wants_page(request)


def result(request: Request, status_code: int, message: str, *, back: str = "/") -> Response:
    if wants_page(request):
        return render(request, "result.html", status_code, ok=status_code < 300, message=message, back=back)
    return Response(
        ActionResult(ok=status_code < 300, message=message).model_dump_json(),
        status_code=status_code,
        media_type="application/json",
    )


def login_redirect(request: Request) -> Response:
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(path, safe='')}", status_code=303)


def upstream_status(error: UpstreamError) -> int:
    """The other service's refusal passed on (400/404/409/422); anything else is a bad gateway."""
    return error.status if error.status in {400, 404, 409, 422} else 502


async def from_upstream(answer: Awaitable[T]) -> T:
    """Another service's answer, or its refusal as the HTTP status it maps to."""
    try:
        return await answer
    except UpstreamError as error:
        raise HTTPException(status_code=upstream_status(error), detail=f"{error.service}: {error}") from None


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
    await record_action(
        context.runtime.pool,
        operator.username,
        action,
        target,
        outcome=outcome,
        detail=(detail or {}) | {"why": str(error)},
    )
    return result(request, status_code, f"{verb}: {error}", back=back)


def install_error_pages(app: FastAPI) -> None:
    """Errors as pages for a browser and JSON for programs; an unauthenticated browser goes to the login page."""

    @app.exception_handler(NotAuthenticatedError)
    async def not_authenticated(request: Request, _: NotAuthenticatedError) -> Response:
        if wants_html(request) or (request.method == "GET" and not request.url.path.startswith("/api/")):
            return login_redirect(request)
        return JSONResponse({"detail": "log in first"}, status_code=401)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        if wants_html(request):
            return render(request, "result.html", error.status_code, ok=False, message=str(error.detail))
        return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in issue['loc'][1:]) or 'request'}: {issue['msg']}"
            for issue in error.errors()
        )
        if wants_html(request):
            return render(request, "result.html", 422, ok=False, message=f"Invalid request: {problems}")
        return JSONResponse({"detail": problems}, status_code=422)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response
