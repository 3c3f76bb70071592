"""Fixtures of the ops tests: a stand-in ingest feed-health server, ops settings and a running ops app."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Header, HTTPException

from devservers.ports import free_port
from services.ops.app import create_app
from services.ops.settings import LoginThrottle, OpsSettings
from shared.settings import KafkaSettings
from tests.apps import running_app

INGEST_TOKEN = "test-ingest-admin-token"
ADMIN = ("admin", "admin-password-for-tests")


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """Serve an ASGI app over real HTTP on a free port, in this event loop; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(300):
            if server.started:
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
        else:
            raise TimeoutError("server did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@dataclass
class FeedHealthServer:
    """Answers as the ingest service's admin API does (same paths, token check and JSON shape)."""

    url: str = ""
    agencies: dict[str, dict[str, Any]] = field(default_factory=dict)
    patches: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def add(self, agency_id: str, *, quiet_minutes: float, interval: int = 15, paused: bool = False) -> None:
        self.agencies[agency_id] = {
            "agency_id": agency_id,
            "name": f"Agency {agency_id}",
            "last_feed_at": (datetime.now(UTC) - timedelta(minutes=quiet_minutes)).isoformat(),
            "expected_feed_interval_minutes": interval,
            "stale": False,
            "in_custody": 321,
            "records_last_24h": {"accepted": 120, "rejected": 4},
            "records_total": {"accepted": 5000, "rejected": 40},
            "notices_paused": paused,
        }

    def app(self) -> FastAPI:
        app = FastAPI()

        def check(authorization: str | None) -> None:
            if authorization != f"Bearer {INGEST_TOKEN}":
                raise HTTPException(401, "bad admin token")

        @app.get("/v1/admin/feed-health")
        async def feed_health(authorization: str | None = Header(default=None)) -> list[dict[str, Any]]:
            check(authorization)
            return list(self.agencies.values())

        @app.get("/v1/admin/agencies")
        async def agencies(authorization: str | None = Header(default=None)) -> list[dict[str, Any]]:
            check(authorization)
            return [
                {"agency_id": a["agency_id"], "notices_paused": a["notices_paused"]} for a in self.agencies.values()
            ]

        @app.patch("/v1/admin/agencies/{agency_id}")
        async def patch(
            agency_id: str, body: dict[str, Any], authorization: str | None = Header(default=None)
        ) -> dict[str, Any]:
            check(authorization)
            if agency_id not in self.agencies:
                raise HTTPException(404, "unknown agency")
            self.patches.append((agency_id, body))
            self.agencies[agency_id]["notices_paused"] = body["notices_paused"]
            return self.agencies[agency_id]

        return app


@pytest.fixture
async def feed_health() -> AsyncIterator[FeedHealthServer]:
    server = FeedHealthServer()
    async with serving(server.app()) as url:
        server.url = url
        yield server


@pytest.fixture
def watched_group(unique: str) -> str:
    """A consumer group of this test alone, so its lag and dead letters are the test's own."""
    return f"g{unique}"


@pytest.fixture
def ops_settings(
    database_url: str, kafka_settings: KafkaSettings, feed_health: FeedHealthServer, watched_group: str
) -> OpsSettings:
    return OpsSettings(
        environment="test",
        database_url=database_url,
        kafka=kafka_settings,
        ingest_url=feed_health.url,
        ingest_admin_token=INGEST_TOKEN,
        feed_poll_interval_seconds=0.5,
        pipeline_poll_interval_seconds=0.5,
        refresh_seconds=1.0,
        consumer_groups=["ops", watched_group],
        bootstrap_admin_username=ADMIN[0],
        bootstrap_admin_password=ADMIN[1],
        login_throttle=LoginThrottle(free_failures=3, base_delay_seconds=600),
    )


@pytest.fixture
async def ops(ops_settings: OpsSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(ops_settings)
    async with running_app(app) as client:
        yield client


CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def log_in(client: httpx.AsyncClient, username: str, password: str) -> str:
    """Log the client in; returns the session's CSRF token (read from the dashboard, as a browser would)."""
    response = await client.post("/login", data={"username": username, "password": password, "next": "/"})
    assert response.status_code == 303, response.text
    page = await client.get("/")
    assert page.status_code == 200
    match = CSRF.search(page.text)
    assert match
    return match.group(1)


async def eventually(check: Any, timeout: float = 15.0, interval: float = 0.2) -> Any:
    """Retry an async check until it returns a truthy value; fail with the last value after ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    value = None
    while asyncio.get_running_loop().time() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s (last value {value!r})")
