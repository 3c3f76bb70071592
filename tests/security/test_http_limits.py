"""The shared HTTP edge of every service: body limits before parsing, JSON depth, proxies, the operator token."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Form, Request

from shared.http import JsonDepthMeter, create_service_app, operator_token_guard
from shared.runtime import ServiceRuntime
from shared.settings import ServiceSettings

OPERATOR_TOKEN = "an-operator-token-for-tests-0123456789"
FEED_LIMIT = 4 * 1024 * 1024


def too_deep(text: bytes, max_depth: int = 32, *, split_at: int | None = None) -> bool:
    meter = JsonDepthMeter(max_depth)
    for chunk in (text,) if split_at is None else (text[:split_at], text[split_at:]):
        meter.feed(chunk)
    return meter.too_deep()


def nested(depth: int) -> bytes:
    return b'{"a": "x\\\\ \\" [[[{{", "b": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


def test_json_depth_is_measured_outside_strings_and_across_chunks() -> None:
    assert too_deep(b"[" * 100_000 + b"]" * 100_000)
    assert not too_deep(nested(32))
    assert too_deep(nested(33))
    for split_at in range(len(nested(33))):
        assert too_deep(nested(33), split_at=split_at)
        assert not too_deep(nested(32), split_at=split_at)
    assert not too_deep(json.dumps({"records": [{"text": "[" * 500, "list": [[1], {"x": [2]}]}] * 50}).encode())


def app_for(settings: ServiceSettings) -> httpx.AsyncClient:
    router = APIRouter()

    @router.post("/v1/feed")
    async def feed(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    @router.post("/v1/json")
    async def json_body(body: dict[str, object]) -> dict[str, int]:
        return {"keys": len(body)}

    @router.post("/v1/webhook")
    async def webhook(body: Annotated[str, Form(alias="Body")] = "") -> dict[str, int]:
        return {"length": len(body)}

    @router.get("/v1/client")
    async def client(request: Request) -> dict[str, str]:
        return {"host": request.client.host if request.client else ""}

    @router.get("/v1/admin/things", dependencies=[operator_token_guard(OPERATOR_TOKEN)])
    async def admin() -> dict[str, bool]:
        return {"ok": True}

    runtime = ServiceRuntime(settings, name="limits", migrations=[])
    app = create_service_app(
        runtime, title="limits", description="test", routers=[router], body_limits={"/v1/feed": FEED_LIMIT}
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("10.1.2.3", 5000)), base_url="http://t")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with app_for(ServiceSettings(environment="test")) as client:
        yield client


async def chunks(size: int, piece: int = 64 * 1024) -> AsyncIterator[bytes]:
    """A body streamed without Content-Length (chunked), as a client hiding its size would send it."""
    sent = 0
    while sent < size:
        yield b"x" * min(piece, size - sent)
        sent += piece


async def test_a_ten_mib_webhook_is_refused_before_parsing(client: httpx.AsyncClient) -> None:
    form = "Body=" + "x" * (10 * 1024 * 1024)
    declared = await client.post(
        "/v1/webhook", content=form, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert declared.status_code == 413
    assert "limit of 65536 bytes" in declared.json()["detail"]
    streamed = await client.post(
        "/v1/webhook", content=chunks(10 * 1024 * 1024), headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert streamed.status_code == 413
    small = await client.post("/v1/webhook", data={"Body": "STOP"})
    assert small.json() == {"length": 4}


async def test_each_endpoint_has_its_own_limit(client: httpx.AsyncClient) -> None:
    three_mib = b"x" * (3 * 1024 * 1024)
    assert (await client.post("/v1/feed", content=three_mib)).json() == {"bytes": len(three_mib)}
    assert (await client.post("/v1/feed", content=chunks(FEED_LIMIT + 1))).status_code == 413
    assert (await client.post("/v1/json", content=three_mib)).status_code == 413  # the 1 MiB default


async def test_deep_json_gets_a_400_that_says_so(client: httpx.AsyncClient) -> None:
    deep = b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    answer = await client.post("/v1/json", content=deep, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    assert answer.json() == {"detail": "JSON nested deeper than 32 levels"}
    fine = await client.post("/v1/json", content=nested(32), headers={"Content-Type": "application/json"})
    assert fine.json() == {"keys": 2}


async def test_forwarded_addresses_are_believed_only_from_trusted_proxies() -> None:
    forwarded = {"X-Forwarded-For": "192.0.2.1, 198.51.100.7"}
    async with app_for(ServiceSettings(environment="test")) as untrusted:
        assert (await untrusted.get("/v1/client", headers=forwarded)).json() == {"host": "10.1.2.3"}
    async with app_for(ServiceSettings(environment="test", trusted_proxies=["10.0.0.0/8"])) as behind_ingress:
        assert (await behind_ingress.get("/v1/client", headers=forwarded)).json() == {"host": "198.51.100.7"}
        assert (await behind_ingress.get("/v1/client")).json() == {"host": "10.1.2.3"}
    two_proxies = ServiceSettings(environment="test", trusted_proxies=["10.0.0.0/8", "198.51.100.7"])
    async with app_for(two_proxies) as chained:
        assert (await chained.get("/v1/client", headers=forwarded)).json() == {"host": "192.0.2.1"}


def test_trusted_proxies_are_read_from_a_comma_separated_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.1")
    assert ServiceSettings().trusted_proxies == ["10.0.0.0/8", "192.168.1.1"]
    monkeypatch.setenv("TRUSTED_PROXIES", "the-ingress")
    with pytest.raises(ValueError, match="not an IP address or CIDR"):
        ServiceSettings()


async def test_operator_endpoints_need_the_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/admin/things")).status_code == 401
    wrong = await client.get("/v1/admin/things", headers={"Authorization": "Bearer not-it"})
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == "Bearer"
    right = await client.get("/v1/admin/things", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
    assert right.json() == {"ok": True}


async def test_metrics_are_not_served_through_a_proxy(client: httpx.AsyncClient) -> None:
    assert (await client.get("/metrics")).status_code == 200
    assert (await client.get("/metrics", headers={"X-Forwarded-For": "192.0.2.1"})).status_code == 404
    assert (await client.get("/metrics", headers={"Forwarded": "for=192.0.2.1"})).status_code == 404
