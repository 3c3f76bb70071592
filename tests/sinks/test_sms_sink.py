"""The local SMS sink's own behaviour over real HTTP: Twilio's auth, errors, no dedupe, listing and configuration."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from devservers.ports import free_port
from devservers.sinks import SmsSink, SmsSinkConfig, common
from devservers.sinks.http_server import EmbeddedHttpServer
from devservers.sinks.sms import config_from_environment
from shared.twilio import signature_is_valid

pytestmark = pytest.mark.integration

SID = "ACsinktest"
TOKEN = "sink-test-token"
FORM = {"To": "+15005550100", "From": "+15005550006", "Body": "hello"}


@pytest.fixture
async def sink() -> AsyncIterator[SmsSink]:
    async with SmsSink(account_sid=SID, auth_token=TOKEN, config=SmsSinkConfig(seed=7)) as running:
        yield running


@pytest.fixture
async def client(sink: SmsSink) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sink.url, auth=(SID, TOKEN)) as http:
        yield http


MESSAGES = f"/2010-04-01/Accounts/{SID}/Messages.json"


async def test_wrong_or_missing_credentials_get_twilios_401(sink: SmsSink) -> None:
    async with httpx.AsyncClient(base_url=sink.url) as anonymous:
        missing = await anonymous.post(MESSAGES, data=FORM)
        wrong = await anonymous.post(MESSAGES, data=FORM, auth=(SID, "not-the-token"))
        garbage = await anonymous.post(MESSAGES, data=FORM, headers={"Authorization": "Basic !!!"})
    for response in (missing, wrong, garbage):
        assert response.status_code == 401
        assert response.json()["code"] == 20003
        assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert sink.messages() == []


async def test_another_account_in_the_path_is_not_found(client: httpx.AsyncClient) -> None:
    response = await client.post("/2010-04-01/Accounts/ACother/Messages.json", data=FORM)
    assert response.status_code == 404
    assert response.json()["code"] == 20404


async def test_a_message_is_accepted_listed_fetched_and_cleared(sink: SmsSink, client: httpx.AsyncClient) -> None:
    form = FORM | {"StatusCallback": "http://127.0.0.1:9/v1/callbacks/sms/local?ref=n-1.a1"}
    created = await client.post(MESSAGES, data=form)
    assert created.status_code == 201
    message = created.json()
    assert message["sid"].startswith("SM")
    assert len(message["sid"]) == 34
    assert (message["status"], message["to"], message["body"]) == ("queued", "+15005550100", "hello")

    listed = (await client.get("/sink/messages")).json()
    assert [(m["sid"], m["reference"], m["body"]) for m in listed] == [(message["sid"], "n-1.a1", "hello")]
    assert (await client.get("/sink/messages", params={"to": "+15005550199"})).json() == []

    await asyncio.sleep(0.4)  # the callback URL answers nothing: the status still moves on
    fetched = await client.get(f"/2010-04-01/Accounts/{SID}/Messages/{message['sid']}.json")
    assert fetched.status_code == 200
    assert fetched.json()["status"] == "delivered"
    unknown = await client.get(f"/2010-04-01/Accounts/{SID}/Messages/SMnope.json")
    assert unknown.status_code == 404

    assert (await client.delete("/sink/messages")).status_code == 204
    assert (await client.get("/sink/messages")).json() == []


async def test_the_same_idempotency_token_makes_two_messages_as_at_twilio(
    sink: SmsSink, client: httpx.AsyncClient
) -> None:
    headers = {"I-Twilio-Idempotency-Token": "tok-1"}
    first = await client.post(MESSAGES, data=FORM, headers=headers)
    second = await client.post(MESSAGES, data=FORM, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json()["sid"] != second.json()["sid"]
    assert len(sink.messages()) == 2

    sink.configure(dedupe=True)  # the opt-in switch, kinder than Twilio
    third = await client.post(MESSAGES, data=FORM, headers={"I-Twilio-Idempotency-Token": "tok-2"})
    again = await client.post(MESSAGES, data=FORM, headers={"I-Twilio-Idempotency-Token": "tok-2"})
    assert third.json()["sid"] == again.json()["sid"]
    assert len(sink.messages()) == 3


async def test_the_message_list_filters_and_pages_like_twilio(sink: SmsSink, client: httpx.AsyncClient) -> None:
    sink.configure(callback_delay_seconds=0.5)
    sids = [(await client.post(MESSAGES, data=FORM | {"Body": f"m{n}"})).json()["sid"] for n in range(5)]
    other = (await client.post(MESSAGES, data=FORM | {"To": "+15005550199"})).json()["sid"]

    page = (await client.get(MESSAGES, params={"To": "+15005550100", "PageSize": 2})).json()
    seen = [m["sid"] for m in page["messages"]]
    while page["next_page_uri"]:
        page = (await client.get(page["next_page_uri"])).json()
        seen += [m["sid"] for m in page["messages"]]
    assert seen == sids[::-1]  # newest first, every page, only that recipient
    everyone = (await client.get(MESSAGES, params={"From": "+15005550006"})).json()["messages"]
    assert {m["sid"] for m in everyone} == {*sids, other}
    assert (await client.get(MESSAGES, params={"From": "+15005550007"})).json()["messages"] == []

    today = datetime.now(UTC).date()
    queued = (await client.get(MESSAGES, params={"DateSent>": today.isoformat()})).json()["messages"]
    assert queued == []  # not sent yet: no date_sent, so no date filter finds them (as at Twilio)
    await asyncio.sleep(1.2)
    sent_today = (await client.get(MESSAGES, params={"DateSent>": today.isoformat()})).json()["messages"]
    assert len(sent_today) == 6
    assert all(m["date_sent"] for m in sent_today)
    tomorrow = today + timedelta(days=1)
    assert (await client.get(MESSAGES, params={"DateSent>": tomorrow.isoformat()})).json()["messages"] == []
    assert (await client.get(MESSAGES, params={"DateSent": "not-a-date"})).status_code == 400
    async with httpx.AsyncClient(base_url=sink.url) as anonymous:
        assert (await anonymous.get(MESSAGES)).status_code == 401


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"From": "+15005550006", "Body": "x"}, 21211),
        ({"To": "5550100", "From": "+15005550006", "Body": "x"}, 21211),
        ({"To": "+15005550100", "Body": "x"}, 21603),
        ({"To": "+15005550100", "From": "+15005550006"}, 21602),
        ({"To": "+15005550100", "From": "+15005550006", "Body": "x" * 1601}, 21617),
    ],
)
async def test_bad_messages_get_twilios_400(client: httpx.AsyncClient, form: dict[str, str], code: int) -> None:
    response = await client.post(MESSAGES, data=form)
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert response.json()["status"] == 400


async def test_configuration_over_http(sink: SmsSink, client: httpx.AsyncClient) -> None:
    changed = await client.post("/sink/config", json={"opted_out_numbers": ["+15005550100"], "failure_rate": 0})
    assert changed.status_code == 200
    assert changed.json()["opted_out_numbers"] == ["+15005550100"]
    assert (await client.get("/sink/config")).json()["opted_out_numbers"] == ["+15005550100"]
    opted_out = await client.post(MESSAGES, data=FORM)
    assert opted_out.status_code == 400
    assert opted_out.json()["code"] == 21610

    for bad in ({"failure_rate": 2}, {"no_such_setting": 1}, [1, 2]):
        rejected = await client.post("/sink/config", json=bad)
        assert rejected.status_code == 422, bad
    not_json = await client.post("/sink/config", content=b"{", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 422
    assert sink.state.config.failure_rate == 0


async def test_a_seeded_failure_rate_is_reproducible(sink: SmsSink, client: httpx.AsyncClient) -> None:
    async def outcomes() -> list[int]:
        await client.post("/sink/config", json={"failure_rate": 0.5, "seed": 42})
        return [(await client.post(MESSAGES, data=FORM)).status_code for _ in range(20)]

    first, second = await outcomes(), await outcomes()
    assert first == second
    assert set(first) <= {201, 429, 500, 503}
    assert 3 < first.count(201) < 17
    assert len(sink.messages()) == 2 * first.count(201)


async def callbacks_of_every_message(sink: SmsSink, *, count: int) -> dict[str, list[dict[str, Any]]]:
    """Each message's callbacks, once every message has ``count`` of them."""
    async with asyncio.timeout(5):
        while True:
            messages = sink.messages()
            if all(len(message["callbacks"]) >= count for message in messages):
                return {message["sid"]: message["callbacks"] for message in messages}
            await asyncio.sleep(0.05)


async def test_each_status_callback_keeps_what_our_app_answered_or_why_nothing_came(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Answered (signed), redirected (not followed, as Twilio does not), refused, or too slow: each callback is kept
    with its outcome and the message goes on to delivered."""
    monkeypatch.setattr(common, "WEBHOOK_TIMEOUT", aiohttp.ClientTimeout(sock_connect=10, sock_read=0.2))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    signed: list[bool] = []
    app = FastAPI()

    @app.post("/ok")
    async def ok(request: Request) -> Response:
        form = {key: str(value) for key, value in (await request.form()).items()}
        signed.append(signature_is_valid(TOKEN, str(request.url), form, request.headers.get("X-Twilio-Signature")))
        return Response(status_code=204)

    @app.post("/moved")
    async def moved() -> RedirectResponse:
        return RedirectResponse(f"{base}/ok", status_code=302)

    @app.post("/slow")
    async def slow() -> Response:
        await asyncio.sleep(0.5)
        return Response(status_code=204)

    callbacks = {
        "ok": f"{base}/ok?ref=1",
        "moved": f"{base}/moved",
        "slow": f"{base}/slow",
        "refused": "http://127.0.0.1:9/",
    }
    server = EmbeddedHttpServer(app, host="127.0.0.1", port=port)
    await server.start()
    try:
        config = SmsSinkConfig(callback_delay_seconds=0.01)
        async with (
            SmsSink(account_sid=SID, auth_token=TOKEN, config=config) as sink,
            httpx.AsyncClient(base_url=sink.url, auth=(SID, TOKEN)) as client,
        ):
            sids = {}
            for name, url in callbacks.items():
                sids[name] = (await client.post(MESSAGES, data=FORM | {"StatusCallback": url})).json()["sid"]
            kept = await callbacks_of_every_message(sink, count=2)
    finally:
        await server.stop()

    def results(name: str) -> list[tuple[str, Any]]:
        return [(callback["status"], callback["result"]) for callback in kept[sids[name]]]

    assert results("ok") == [("sent", 204), ("delivered", 204)]
    assert signed == [True, True]  # the redirected callbacks never reached /ok
    assert results("moved") == [("sent", 302), ("delivered", 302)]
    assert results("slow") == [("sent", "error: SocketTimeoutError"), ("delivered", "error: SocketTimeoutError")]
    assert results("refused") == [("sent", "error: ClientConnectorError"), ("delivered", "error: ClientConnectorError")]


def test_configuration_from_the_environment() -> None:
    config = config_from_environment(
        {
            "SMS_SINK_FAILURE_RATE": "0.25",
            "SMS_SINK_OPTED_OUT_NUMBERS": "+15005550100, +15005550101",
            "SMS_SINK_SEED": "3",
            "UNRELATED": "x",
        }
    )
    assert config.failure_rate == 0.25
    assert config.opted_out_numbers == ["+15005550100", "+15005550101"]
    assert config.seed == 3
    assert config_from_environment({}) == SmsSinkConfig()
