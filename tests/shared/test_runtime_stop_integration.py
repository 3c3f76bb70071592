"""A service stops in bounded time, even when a loop will not end or a connection is never given back."""

from __future__ import annotations

import asyncio
import time

import pytest

from shared import runtime as runtime_module
from shared.runtime import ServiceRuntime
from shared.settings import KafkaSettings, ServiceSettings

pytestmark = pytest.mark.integration


async def test_stop_abandons_what_hangs_and_says_where(
    database_url: str, kafka_settings: KafkaSettings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(runtime_module, "STOP_SECONDS", 0.5)
    runtime = ServiceRuntime(
        ServiceSettings(database_url=database_url, kafka=kafka_settings), name="svc", migrations=[], outbox=False
    )
    await runtime.start()
    holding = asyncio.Event()
    release = asyncio.Event()

    async def refuses_to_end() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await release.wait()  # as a client library that goes on closing after it was cancelled

    async def keeps_a_connection() -> None:
        await runtime.pool.acquire()
        holding.set()
        await release.wait()

    runtime.spawn("stubborn", refuses_to_end)
    keeper = asyncio.create_task(keeps_a_connection())
    await holding.wait()
    started = time.monotonic()
    await runtime.stop()
    took = time.monotonic() - started

    assert took < 3, f"stop took {took:.1f} s"
    messages = [record.getMessage() for record in caplog.records]
    assert any("stubborn did not stop" in m and "refuses_to_end" in m for m in messages), messages
    assert any("connections still in use" in m for m in messages), messages
    release.set()
    await keeper
