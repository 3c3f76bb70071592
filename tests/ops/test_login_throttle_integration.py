"""Login throttling slows one client's guesses but never keeps an operator with the right password out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from services.ops.app import create_app
from services.ops.settings import LoginThrottle, OpsSettings
from tests.ops.conftest import ADMIN

pytestmark = pytest.mark.integration

ATTACKER = "203.0.113.66"
OPERATOR = "198.51.100.10"


@asynccontextmanager
async def clients(settings: OpsSettings, *addresses: str) -> AsyncIterator[list[httpx.AsyncClient]]:
    """The app running once, and one HTTP client per client address."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        opened = [
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(address, 40000)), base_url="http://ops")
            for address in addresses
        ]
        try:
            yield opened
        finally:
            for client in opened:
                await client.aclose()


def lockouts() -> float:
    return REGISTRY.get_sample_value("cw_ops_login_lockouts_total") or 0.0


async def test_fifty_parallel_guesses_then_the_right_password_from_elsewhere(
    ops_settings: OpsSettings, pool: Any
) -> None:
    before = lockouts()
    async with clients(ops_settings, ATTACKER, OPERATOR) as (attacker, operator):
        guesses = await asyncio.gather(
            *(attacker.post("/login", data={"username": ADMIN[0], "password": f"guess-{n}"}) for n in range(50))
        )
        statuses = sorted(response.status_code for response in guesses)
        free = ops_settings.login_throttle.free_failures
        assert statuses == [401] * free + [429] * (50 - free)  # the claim is atomic: no extra tries in parallel
        refused = next(response for response in guesses if response.status_code == 429)
        assert int(refused.headers["retry-after"]) > 0
        assert "Too many failed logins" in refused.text
        # The attacker's address is slowed even with the right password; the operator's is not.
        assert (await attacker.post("/login", data={"username": ADMIN[0], "password": ADMIN[1]})).status_code == 429
        answer = await operator.post("/login", data={"username": ADMIN[0], "password": ADMIN[1], "next": "/"})
        assert answer.status_code == 303
        assert (await operator.get("/")).status_code == 200
    audited = await pool.fetch("SELECT detail FROM audit_log WHERE action = 'login' AND outcome = 'throttled'")
    assert [row["detail"]["client"] for row in audited] == [ATTACKER]
    assert lockouts() == before + 1


async def test_the_wait_doubles_per_failure_and_a_success_forgets_the_pair(
    ops_settings: OpsSettings, pool: Any
) -> None:
    settings = ops_settings.model_copy(
        update={"login_throttle": LoginThrottle(free_failures=2, base_delay_seconds=10, max_delay_seconds=35)}
    )
    async with clients(settings, ATTACKER) as (client,):

        async def wrong_after_the_wait() -> float:
            await pool.execute("UPDATE login_throttle SET next_allowed_at = now() - interval '1 second'")
            answer = await client.post("/login", data={"username": ADMIN[0], "password": "wrong"})
            assert answer.status_code == 401
            wait: float = await pool.fetchval("SELECT extract(epoch FROM next_allowed_at - now()) FROM login_throttle")
            return wait

        waits = [await wrong_after_the_wait() for _ in range(5)]
        assert waits[0] <= 1  # a free failure
        assert [round(wait / 5) * 5 for wait in waits[1:]] == [10, 20, 35, 35]  # doubling, capped
        await pool.execute("UPDATE login_throttle SET next_allowed_at = now()")
        assert (await client.post("/login", data={"username": ADMIN[0], "password": ADMIN[1]})).status_code == 303
        assert await pool.fetchval("SELECT count(*) FROM login_throttle") == 0


async def test_past_the_global_cap_a_failing_client_waits_the_most_but_a_fresh_one_gets_in(
    ops_settings: OpsSettings, pool: Any
) -> None:
    settings = ops_settings.model_copy(
        update={"login_throttle": LoginThrottle(free_failures=5, global_failure_cap=20, max_delay_seconds=600)}
    )
    async with clients(settings, ATTACKER, OPERATOR) as (attacker, operator):
        await pool.execute(
            "INSERT INTO login_attempts (username, client, succeeded)"
            " SELECT 'admin', '192.0.2.' || n, false FROM generate_series(1, 20) AS n"
        )
        assert (await attacker.post("/login", data={"username": ADMIN[0], "password": "x"})).status_code == 401
        assert (await attacker.post("/login", data={"username": ADMIN[0], "password": "y"})).status_code == 429
        assert (await operator.post("/login", data={"username": ADMIN[0], "password": ADMIN[1]})).status_code == 303
