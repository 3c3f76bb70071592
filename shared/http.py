"""The FastAPI application every service starts from: lifespan, /healthz, /readyz, /metrics, request metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

from asyncpg.exceptions import CharacterNotInRepertoireError, UntranslatableCharacterError
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared import metrics
from shared.failures import TRANSIENT_ERROR_TYPES, transient_dependency
from shared.runtime import ServiceRuntime

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
    async def prometheus_metrics() -> Response:
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


def create_service_app(
    runtime: ServiceRuntime,
    *,
    title: str,
    description: str,
    routers: Sequence[APIRouter] = (),
    on_start: Hook | None = None,
    on_stop: Hook | None = None,
    version: str = "0.1.0",
) -> FastAPI:
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

    @app.middleware("http")
    async def count_requests(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics.HTTP_REQUESTS.labels(runtime.name, request.method, path, str(response.status_code)).inc()
        return response

    return app
