"""Every answered request is counted once, by its route's template and its status, errors included."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from shared import metrics
from shared.http import RequestCounter


def counted(method: str, route: str, status: str) -> float:
    return metrics.HTTP_REQUESTS.labels("counter-test", method, route, status)._value.get()  # type: ignore[no-any-return]


@pytest.fixture
def client() -> httpx.AsyncClient:
    app = FastAPI()

    @app.get("/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    @app.post("/broken")
    async def broken() -> None:
        raise RuntimeError("a bug")

    app.add_middleware(RequestCounter, service="counter-test")
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://t")


async def test_requests_are_counted_by_route_template_and_status(client: httpx.AsyncClient) -> None:
    before = counted("GET", "/things/{thing_id}", "200"), counted("GET", "unmatched", "404")
    before_error = counted("POST", "/broken", "500")
    async with client:
        assert (await client.get("/things/1")).status_code == 200
        assert (await client.get("/things/2")).status_code == 200
        assert (await client.get("/nowhere")).status_code == 404
        assert (await client.post("/broken")).status_code == 500
    assert counted("GET", "/things/{thing_id}", "200") == before[0] + 2
    assert counted("GET", "unmatched", "404") == before[1] + 1
    assert counted("POST", "/broken", "500") == before_error + 1
