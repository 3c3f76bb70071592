"""Run an ASGI app with uvicorn inside an already running event loop (tests, the sinks' CLI)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError


class _QuietServer(uvicorn.Server):
    """Leaves signal handling to whoever owns the process (pytest, or the sinks' CLI)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class EmbeddedHttpServer:
    """``await start()`` returns once the port accepts connections; ``await stop()`` shuts down gracefully."""

    def __init__(self, app: FastAPI, *, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.ready_timeout = 10.0
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on", access_log=False)
        self._server = _QuietServer(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve())
        async with asyncio.timeout(self.ready_timeout):
            while not self._server.started:
                if self._task.done():
                    self._task.result()
                    raise RuntimeError(f"HTTP server on {self.host}:{self.port} stopped during start-up")
                await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        await self._task
        self._task = None


class SinkStore(Protocol):
    """What a sink keeps: what it received, and its settings."""

    @property
    def config(self) -> BaseModel: ...

    def configure(self, changes: Mapping[str, Any]) -> BaseModel: ...

    def clear(self) -> None: ...

    def received(self, to: str | None) -> list[dict[str, Any]]: ...


def add_sink_routes(app: FastAPI, received: str, store: SinkStore) -> None:
    """``GET /sink/<received>`` (optional ``?to=``) lists what the sink received, ``DELETE`` clears it;
    ``GET /sink/config`` and ``POST /sink/config`` (a partial change): how tests make a sink misbehave."""

    @app.get(f"/sink/{received}")
    async def list_received(to: str | None = None) -> list[dict[str, Any]]:
        return store.received(to)

    @app.delete(f"/sink/{received}", status_code=204)
    async def clear_received() -> None:
        store.clear()

    @app.get("/sink/config")
    async def read_config() -> dict[str, Any]:
        return store.config.model_dump(mode="json")

    @app.post("/sink/config", response_model=None)
    async def change_config(request: Request) -> JSONResponse:
        return await apply_config_changes(request, store.configure)


async def apply_config_changes(request: Request, configure: Callable[[Mapping[str, Any]], BaseModel]) -> JSONResponse:
    """``POST /sink/config``: a partial JSON object, validated; 422 naming the problem otherwise."""
    try:
        changes = await request.json()
    except ValueError:
        return JSONResponse({"detail": "the body must be JSON"}, status_code=422)
    if not isinstance(changes, dict):
        return JSONResponse({"detail": "expected a JSON object of settings to change"}, status_code=422)
    try:
        config = configure(changes)
    except ValidationError as error:
        problems = [{"loc": [str(part) for part in issue["loc"]], "msg": issue["msg"]} for issue in error.errors()]
        return JSONResponse({"detail": problems}, status_code=422)
    return JSONResponse(config.model_dump(mode="json"))
