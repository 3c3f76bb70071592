"""The FastAPI application every service starts from: lifespan, /healthz, /readyz, /metrics, request metrics."""

from __future__ import annotations

import hmac
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

from asyncpg.exceptions import CharacterNotInRepertoireError, UntranslatableCharacterError
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from shared import metrics
from shared.failures import TRANSIENT_ERROR_TYPES, transient_dependency
from shared.runtime import ServiceRuntime
from shared.settings import ServiceSettings

Hook = Callable[[ServiceRuntime], Awaitable[None]]


def health_router(runtime: ServiceRuntime) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": runtime.name}

    @router.get("/readyz", summary="Readiness: database, Kafka and consumers are up")
    async def readyz() -> JSONResponse:
        checks = await runtime.readiness()
        ready = all(value == "ok" for value in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def prometheus_metrics(request: Request) -> Response:
        """For the scraper inside the cluster only: counts that move when one person registers must not reach the
        public, so a request that came through a proxy (the ingress adds X-Forwarded-For) is not answered."""
        if "x-forwarded-for" in request.headers or "forwarded" in request.headers:
            return Response(status_code=404)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


DEPENDENCY_RETRY_AFTER_SECONDS = 5


async def dependency_unavailable(_: Request, error: Exception) -> JSONResponse:
    """A database or broker that is down is the server's passing trouble, not the client's error and not a bug:
    503 with ``Retry-After``, so a careful client (an agency's feed job) sends the same request again."""
    dependency = transient_dependency(error)
    if dependency is None:
        raise error
    return JSONResponse(
        {"detail": f"temporarily unavailable ({dependency}); nothing was lost, try again shortly"},
        status_code=503,
        headers={"Retry-After": str(DEPENDENCY_RETRY_AFTER_SECONDS)},
    )


async def text_postgres_cannot_hold(_: Request, __: Exception) -> JSONResponse:
    """PostgreSQL text cannot hold a NUL (U+0000): a request that carries one is the client's error, not a 500."""
    return JSONResponse({"detail": "text must not contain NUL (\\u0000) characters"}, status_code=400)


OPERATOR_BEARER = HTTPBearer(auto_error=False, description="The service's operator token")


def operator_token_guard(expected: str) -> Any:
    """A route dependency that answers 401 unless the request carries ``Authorization: Bearer <expected>``."""

    def require_operator_token(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(OPERATOR_BEARER)],
    ) -> None:
        given = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise HTTPException(401, "operator bearer token required", headers={"WWW-Authenticate": "Bearer"})

    return Depends(require_operator_token)


_NOT_JSON_STRUCTURE = bytes(sorted(set(range(256)) - set(b'[]{}"')))
_INNERMOST_PAIR = re.compile(rb"[\[{][\]}]")


class JsonDepthMeter:
    """Follows a JSON text chunk by chunk and tells how deep it nests, without parsing it (a parser would recurse
    and fail with a RecursionError first). Only C-speed byte operations: strings are dropped by splitting on their
    quotes once escapes are gone, and the brackets left outside them are kept for :meth:`too_deep`."""

    def __init__(self, max_depth: int) -> None:
        self.max_depth = max_depth
        self._brackets = bytearray()
        self._in_string = False
        self._held = b""  # trailing backslashes of the last chunk: what they escape comes in the next one

    def feed(self, chunk: bytes) -> None:
        text = self._held + chunk
        complete = text.rstrip(b"\\")
        self._held = text[len(complete) :]
        structure = complete.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_JSON_STRUCTURE)
        parts = structure.split(b'"')
        self._brackets += b"".join(parts[1::2] if self._in_string else parts[0::2])
        self._in_string ^= len(parts) % 2 == 0

    def too_deep(self) -> bool:
        """True when some bracket is nested deeper than ``max_depth``: each pass drops the innermost pairs."""
        brackets = bytes(self._brackets)
        for _ in range(self.max_depth):
            brackets, dropped = _INNERMOST_PAIR.subn(b"", brackets)
            if not dropped:
                return False
        return _INNERMOST_PAIR.search(brackets) is not None


def refuse_deep_json(body: bytes, max_depth: int) -> None:
    """400 when a whole body (read whatever its content type says) nests deeper than ``max_depth``."""
    meter = JsonDepthMeter(max_depth)
    meter.feed(body)
    if meter.too_deep():
        raise HTTPException(400, json_too_deep_detail(max_depth))


def json_too_deep_detail(max_depth: int) -> str:
    return f"JSON nested deeper than {max_depth} levels"


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class RequestCounter:
    """Counts each answered request by route and status, as plain ASGI: Starlette's ``BaseHTTPMiddleware`` (behind
    ``@app.middleware``) runs every request through task groups and memory streams, which the bench's profile showed
    among delivery's largest costs per provider callback."""

    def __init__(self, app: ASGIApp, *, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")  # the router sets it on this same scope
            metrics.HTTP_REQUESTS.labels(self.service, scope["method"], path, str(status)).inc()


class RequestLimitsMiddleware:
    """Refuses a request body before anything parses it: 413 past the endpoint's size limit (by ``Content-Length``
    at once, else as it streams in), 400 past the JSON nesting limit.

    The limit is the endpoint's own (``body_limits``, by route path such as ``/v1/agencies/{agency_id}/custody-files``)
    if it has one, else the form limit for form bodies (provider webhooks, logins), else the default.
    """

    def __init__(self, app: ASGIApp, *, settings: ServiceSettings, body_limits: Mapping[str, int]) -> None:
        self.app = app
        self.settings = settings
        self.endpoint_limits = [(compile_path(path)[0], limit) for path, limit in body_limits.items()]

    def limit_for(self, scope: Scope, content_type: str) -> int:
        path = scope["path"]
        for pattern, limit in self.endpoint_limits:
            if pattern.match(path):
                return limit
        if content_type.startswith(FORM_TYPES):
            return self.settings.max_form_body_bytes
        return self.settings.max_request_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {name: value for name, value in scope["headers"] if name in (b"content-length", b"content-type")}
        content_type = headers.get(b"content-type", b"").decode("latin-1").lower()
        limit = self.limit_for(scope, content_type)
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            too_large = JSONResponse(
                {"detail": f"body of {int(declared)} bytes exceeds this endpoint's limit of {limit} bytes"}, 413
            )
            await too_large(scope, receive, send)
            return
        depth = JsonDepthMeter(self.settings.max_json_depth) if "json" in content_type else None
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                chunk: bytes = message.get("body", b"")
                received += len(chunk)
                if received > limit:
                    raise HTTPException(413, f"body exceeds this endpoint's limit of {limit} bytes")
                if depth is not None:
                    depth.feed(chunk)
                    if not message.get("more_body", False) and depth.too_deep():
                        raise HTTPException(400, json_too_deep_detail(depth.max_depth))
            return message

        await self.app(scope, limited_receive, send)


def create_service_app(
    runtime: ServiceRuntime,
    *,
    title: str,
    description: str,
    routers: Sequence[APIRouter] = (),
    on_start: Hook | None = None,
    on_stop: Hook | None = None,
    version: str = "0.1.0",
    body_limits: Mapping[str, int] | None = None,
) -> FastAPI:
    """``body_limits`` gives endpoints (by route path) a larger or smaller body limit than the service's default."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        if on_start is not None:
            await on_start(runtime)
        try:
            yield
        finally:
            if on_stop is not None:
                await on_stop(runtime)
            await runtime.stop()

    app = FastAPI(title=title, description=description, version=version, lifespan=lifespan)
    app.state.runtime = runtime
    app.include_router(health_router(runtime))
    for router in routers:
        app.include_router(router)
    for error_type in TRANSIENT_ERROR_TYPES:
        app.add_exception_handler(error_type, dependency_unavailable)
    app.add_exception_handler(CharacterNotInRepertoireError, text_postgres_cannot_hold)
    app.add_exception_handler(UntranslatableCharacterError, text_postgres_cannot_hold)

    settings = runtime.settings
    # Innermost, so the refusals it raises while the endpoint reads the body reach FastAPI's handlers as they are.
    app.add_middleware(RequestLimitsMiddleware, settings=settings, body_limits=body_limits or {})

    app.add_middleware(RequestCounter, service=runtime.name)

    if settings.trusted_proxies:  # outermost, so every other part sees the client behind our own proxies
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    return app
