"""What the sinks share: the Twilio REST shape of the SMS and voice sinks (basic auth, errors, signed webhooks,
paged lists), initial settings from the environment, and running a sink on a local port."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import random
import re
import secrets
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Self, TypeVar, get_origin
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.datastructures import QueryParams

from devservers.ports import free_port
from devservers.sinks.http_server import EmbeddedHttpServer
from shared.twilio import twilio_signature

API_PREFIX = "/2010-04-01/Accounts/{account_sid}"
RFC2822 = "%a, %d %b %Y %H:%M:%S +0000"
"""How Twilio writes its dates (always GMT)."""
MAX_PAGE_SIZE = 1000
WEBHOOK_CONNECTIONS = 100
"""Webhooks in flight at once, each on a kept-alive connection; the rest wait their turn in aiohttp's connector (a
first-in first-out queue, cheap however long: the sink posts several hundred callbacks a second in the bench)."""
WEBHOOK_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10.0, sock_read=10.0)
"""Ten seconds to connect and between reads; waiting for a free connection has no limit (a queued callback is late,
not lost)."""
WEBHOOK_ERRORS = (aiohttp.ClientError, TimeoutError)
"""How a webhook fails without an answer: refused, reset, timed out, or a URL that cannot be posted to."""
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
Config = TypeVar("Config", bound=BaseModel)
State = TypeVar("State", bound="TwilioSinkState[Any]")
# Twilio's codes for the outcomes the sinks can simulate.
ERROR_MESSAGES: dict[int, str] = {
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    20503: "Service Unavailable",
    21211: "The 'To' number is not a valid phone number.",
    21602: "Message body is required.",
    21603: "The 'From' phone number is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21617: "The concatenated message body exceeds the 1600 character limit.",
    30003: "Unreachable destination handset",
    30006: "Landline or unreachable carrier",
}


def config_from_environment(model: type[Config], prefix: str, environ: Mapping[str, str]) -> Config:
    """``<PREFIX>_<FIELD>`` variables: lists comma-separated, mappings as JSON objects, the rest as written."""
    values: dict[str, Any] = {}
    for name, spec in model.model_fields.items():
        raw = environ.get(f"{prefix}_{name.upper()}")
        if raw is None:
            continue
        kind = get_origin(spec.annotation)
        if kind is list:
            values[name] = [item.strip() for item in raw.split(",") if item.strip()]
        elif kind is dict:
            try:
                values[name] = json.loads(raw)
            except ValueError:
                values[name] = raw
        else:
            values[name] = raw
    return model.model_validate(values)


def twilio_error(http_status: int, code: int, message: str | None = None) -> JSONResponse:
    """Twilio's JSON error shape."""
    return JSONResponse(
        {
            "code": code,
            "message": message or ERROR_MESSAGES.get(code, "Error"),
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": http_status,
        },
        status_code=http_status,
        headers={"WWW-Authenticate": 'Basic realm="Twilio API"'} if http_status == 401 else None,
    )


@dataclass(frozen=True)
class WebhookAnswer:
    """What our app answered a webhook: its HTTP status and body."""

    status: int
    text: str


class TwilioSinkState(Generic[Config]):
    """The account a Twilio-shaped sink serves, its settings and seeded draws, and its webhook client and tasks."""

    def __init__(self, *, account_sid: str, auth_token: str, config: Config) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.config = config
        self.random = random.Random(self.seed)
        self.tasks: set[asyncio.Task[None]] = set()
        self.http: aiohttp.ClientSession | None = None

    @property
    def seed(self) -> int | None:
        seed: int | None = getattr(self.config, "seed", None)
        return seed

    def reseed(self) -> None:
        self.random = random.Random(self.seed)

    def configure(self, changes: Mapping[str, Any]) -> Config:
        """Merge ``changes`` into the configuration (validated); a new seed restarts the random sequences."""
        self.config = type(self.config).model_validate(self.config.model_dump() | dict(changes))
        if "seed" in changes:
            self.reseed()
        return self.config

    def cancel_tasks(self) -> None:
        for task in self.tasks:
            task.cancel()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in the background (callbacks, a call's progress), cancelled when the app stops."""
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def authorised(self, authorization: str | None) -> bool:
        """HTTP basic auth with the account SID and auth token, as Twilio's REST API checks it."""
        if not authorization or not authorization.lower().startswith("basic "):
            return False
        try:
            decoded = base64.b64decode(authorization[6:], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        username, _, password = decoded.partition(":")
        return hmac.compare_digest(username, self.account_sid) & hmac.compare_digest(password, self.auth_token)

    def refusal(self, account_sid: str, authorization: str | None) -> JSONResponse | None:
        """Twilio's 401 for bad credentials, then its 404 for another account's resources; None when allowed."""
        if not self.authorised(authorization):
            return twilio_error(401, 20003)
        if account_sid != self.account_sid:
            return twilio_error(404, 20404)
        return None

    async def signed_post(self, url: str, params: dict[str, str]) -> WebhookAnswer:
        """POST a webhook form signed as Twilio signs them (``X-Twilio-Signature``); redirects are not followed.
        Raises one of ``WEBHOOK_ERRORS`` when no answer comes."""
        assert self.http is not None  # noqa: S101 - set for the app's lifetime
        signature = twilio_signature(self.auth_token, url, params)
        async with self.http.post(
            url, data=params, headers={"X-Twilio-Signature": signature}, allow_redirects=False
        ) as response:
            return WebhookAnswer(status=response.status, text=await response.text(errors="replace"))

    async def status_callback(
        self, url: str, params: dict[str, str], *, status: str, loss_rate: float, draws: random.Random, kept: list[Any]
    ) -> None:
        """One signed status callback, or none when ``draws`` loses it; the outcome is appended to ``kept``."""
        if draws.random() < loss_rate:
            kept.append({"status": status, "result": "dropped"})
            return
        try:
            answer = await self.signed_post(url, params)
        except WEBHOOK_ERRORS as error:
            kept.append({"status": status, "result": f"error: {type(error).__name__}"})
            return
        kept.append({"status": status, "result": answer.status})


def webhook_lifespan(state: TwilioSinkState[Any]) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's webhook client for its lifetime (no cookies kept: each webhook stands alone); on the way out its
    background tasks are cancelled and awaited."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with aiohttp.ClientSession(
            # Idle connections are dropped before uvicorn's 5 s keep-alive closes them under a callback in flight.
            connector=aiohttp.TCPConnector(limit=WEBHOOK_CONNECTIONS, keepalive_timeout=4.0),
            timeout=WEBHOOK_TIMEOUT,
            cookie_jar=aiohttp.DummyCookieJar(),
        ) as session:
            state.http = session
            yield
            for task in list(state.tasks):
                task.cancel()
            await asyncio.gather(*state.tasks, return_exceptions=True)
            state.http = None

    return lifespan


def paging(query: Mapping[str, str]) -> tuple[int, int]:
    """Twilio's ``Page`` and ``PageSize`` (default 50, 1 to 1000); ValueError when one is not a number."""
    page_size = min(MAX_PAGE_SIZE, max(1, int(query.get("PageSize", "50"))))
    page = max(0, int(query.get("Page", "0")))
    return page, page_size


def twilio_page(
    key: str, chosen: Sequence[Any], *, page: int, page_size: int, path: str, query: list[tuple[str, str]]
) -> dict[str, Any]:
    """One page of Twilio's list answer (resources under ``key``, each ``twilio_json()``), with the URIs of the
    pages around it (same filters)."""
    kept = [(name, value) for name, value in query if name not in {"Page", "PageSize", "PageToken"}]

    def page_uri(number: int) -> str:
        return f"{path}?{urlencode([*kept, ('PageSize', str(page_size)), ('Page', str(number))])}"

    shown = chosen[page * page_size : (page + 1) * page_size]
    return {
        key: [resource.twilio_json() for resource in shown],
        "page": page,
        "page_size": page_size,
        "start": page * page_size,
        "end": page * page_size + max(0, len(shown) - 1),
        "uri": page_uri(page),
        "first_page_uri": page_uri(0),
        "previous_page_uri": page_uri(page - 1) if page > 0 else None,
        "next_page_uri": page_uri(page + 1) if (page + 1) * page_size < len(chosen) else None,
    }


def twilio_list(
    state: TwilioSinkState[Any],
    request: Request,
    *,
    account_sid: str,
    authorization: str | None,
    key: str,
    choose: Callable[[QueryParams], list[Any]],
    invalid: str,
) -> JSONResponse:
    """Twilio's list answer: the resources ``choose`` finds for the query (newest first), one page of them; 400
    (``invalid``, then the problem) when the query's paging or filters are not what Twilio reads."""
    if (refused := state.refusal(account_sid, authorization)) is not None:
        return refused
    query = request.query_params
    try:
        page, page_size = paging(query)
        chosen = choose(query)
    except ValueError as error:
        return twilio_error(400, 20001, f"{invalid}: {error}")
    return JSONResponse(
        twilio_page(key, chosen, page=page, page_size=page_size, path=request.url.path, query=query.multi_items())
    )


def callback_reference(status_callback: str | None) -> str | None:
    """The ``ref`` query parameter of a status-callback URL (delivery's attempt id), if any."""
    if not status_callback:
        return None
    values = parse_qs(urlsplit(status_callback).query).get("ref")
    return values[0] if values else None


class LocalSink:
    """A sink's HTTP app on a local port, started and stopped from the caller's event loop."""

    def __init__(self, app: FastAPI, *, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self._http = EmbeddedHttpServer(app, host=host, port=port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._http.port}"

    async def start(self) -> None:
        await self._http.start()

    async def stop(self) -> None:
        await self._http.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.stop()


class TwilioSink(LocalSink, Generic[State]):
    """A Twilio-shaped sink for one account (a random auth token unless given) on a local port (a free one unless
    given); ``create_app(account_sid, auth_token)`` builds its app, whose state is ``app.state.sink``."""

    def __init__(
        self,
        create_app: Callable[[str, str], FastAPI],
        *,
        account_sid: str,
        auth_token: str | None,
        host: str,
        port: int | None,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token or secrets.token_hex(16)
        self.port = port or free_port()
        super().__init__(create_app(account_sid, self.auth_token), host=host, port=self.port)
        self.state: State = self.app.state.sink
