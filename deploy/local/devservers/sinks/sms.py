"""A local SMS provider with the Twilio Messages API shape, for ``make run`` and tests.

- ``POST /2010-04-01/Accounts/{sid}/Messages.json`` (form: To, From, Body, StatusCallback; HTTP basic auth with the
  configured account SID and auth token, 401 otherwise) answers 201 with Twilio-shaped JSON (a new ``SM…`` sid,
  status ``queued``). Like Twilio's Messages API, every accepted POST is a new message, whatever its headers
  (``I-Twilio-Idempotency-Token`` is a header Twilio *sends* on webhooks; the API does not deduplicate on it). The
  ``dedupe`` switch (off by default) makes the sink deduplicate on that header, for a test that wants it.
- Then, like Twilio, it POSTs signed status callbacks (``X-Twilio-Signature`` over the callback URL and the form) to
  ``StatusCallback``: ``sent`` and then ``delivered``, or ``undelivered``/``failed`` with an ``ErrorCode``.
- ``GET /2010-04-01/Accounts/{sid}/Messages/{MessageSid}.json``: a message's current status (reconciliation).
- ``GET /2010-04-01/Accounts/{sid}/Messages.json``: the message list, newest first, filtered as Twilio filters it
  (``To``, ``From``, ``DateSent`` / ``DateSent<`` / ``DateSent>`` on the GMT date a message was sent, so a message
  still queued has no ``date_sent`` and no date filter finds it), paged by ``PageSize`` (default 50, at most 1000)
  and ``Page`` with ``next_page_uri``.
- ``GET /sink/messages`` (optional ``?to=``) lists what was received, ``DELETE /sink/messages`` clears. Each entry
  has ``reference``: the ``ref`` parameter of its ``StatusCallback`` URL (delivery puts its attempt id there), so a
  test can tell which attempt a message belongs to.
- ``GET /sink/config`` / ``POST /sink/config`` (JSON, partial) read and change the fault injection, see
  :class:`SmsSinkConfig`; ``SMS_SINK_<FIELD>`` environment variables set the initial values (lists comma-separated).

In-process use::

    async with SmsSink(account_sid="ACtest", auth_token="secret", config=SmsSinkConfig(failure_rate=0.5)) as sink:
        provider = TwilioSmsProvider(..., base_url=sink.url)
        sink.messages()  # what arrived
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import FastAPI, Form, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import QueryParams

from devservers.sinks import common
from devservers.sinks.common import (
    API_PREFIX,
    E164,
    ERROR_MESSAGES,
    RFC2822,
    TwilioSink,
    TwilioSinkState,
    callback_reference,
    twilio_error,
    twilio_list,
    webhook_lifespan,
)
from devservers.sinks.http_server import add_sink_routes

logger = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
TEMPORARY_FAILURES: tuple[tuple[int, int], ...] = ((500, 20500), (503, 20503), (429, 20429))


class SmsSinkConfig(BaseModel):
    """What the sink simulates. Rates are shares of sends (0..1), drawn from a seeded random source."""

    model_config = ConfigDict(extra="forbid")

    failure_rate: float = Field(default=0.0, ge=0, le=1, description="Sends answered 500/503/429 (temporary).")
    response_delay_seconds: float = Field(default=0.0, ge=0, le=60, description="Delay before answering a send.")
    callback_delay_seconds: float = Field(default=0.1, ge=0, le=600, description="Between status callbacks.")
    callback_loss_rate: float = Field(default=0.0, ge=0, le=1, description="Callbacks never sent (missed receipts).")
    undelivered_rate: float = Field(default=0.0, ge=0, le=1, description="Accepted, then 'undelivered' 30003.")
    opted_out_numbers: list[str] = Field(default_factory=list, description="Answered 400 with error 21610.")
    dedupe: bool = Field(
        default=False,
        description="Kinder than Twilio: the same I-Twilio-Idempotency-Token header returns the first message.",
    )
    unreachable_numbers: list[str] = Field(default_factory=list, description="Accepted, then 'failed' 30006.")
    seed: int | None = None


def config_from_environment(environ: Mapping[str, str] | None = None) -> SmsSinkConfig:
    """``SMS_SINK_FAILURE_RATE=0.5``, ``SMS_SINK_OPTED_OUT_NUMBERS=+15005550009,+1...`` and so on."""
    return common.config_from_environment(SmsSinkConfig, "SMS_SINK", os.environ if environ is None else environ)


@dataclass
class StoredSms:
    sid: str
    account_sid: str
    to: str
    from_: str
    body: str
    status: str
    idempotency_token: str | None
    status_callback: str | None
    received_at: datetime
    sent_at: datetime | None = None
    error_code: int | None = None
    callbacks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def reference(self) -> str | None:
        """The ``ref`` query parameter of the status-callback URL (delivery's attempt id), if any."""
        return callback_reference(self.status_callback)

    def twilio_json(self) -> dict[str, Any]:
        """The fields of Twilio's Message resource that clients read."""
        now = datetime.now(UTC).strftime(RFC2822)
        return {
            "sid": self.sid,
            "account_sid": self.account_sid,
            "to": self.to,
            "from": self.from_,
            "body": self.body,
            "status": self.status,
            "num_segments": "1",
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "error_code": self.error_code,
            "error_message": ERROR_MESSAGES.get(self.error_code) if self.error_code else None,
            "date_created": self.received_at.strftime(RFC2822),
            "date_sent": self.sent_at.strftime(RFC2822) if self.sent_at else None,
            "date_updated": now,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{self.sid}.json",
        }

    def listing(self) -> dict[str, Any]:
        return {
            "sid": self.sid,
            "to": self.to,
            "from": self.from_,
            "body": self.body,
            "status": self.status,
            "error_code": self.error_code,
            "idempotency_token": self.idempotency_token,
            "reference": self.reference,
            "status_callback": self.status_callback,
            "received_at": self.received_at.isoformat(),
            "callbacks": list(self.callbacks),
        }


class SmsSinkState(TwilioSinkState[SmsSinkConfig]):
    """Everything the sink received, plus its fault-injection settings."""

    def __init__(self, *, account_sid: str, auth_token: str, config: SmsSinkConfig) -> None:
        super().__init__(account_sid=account_sid, auth_token=auth_token, config=config)
        self.messages: dict[str, StoredSms] = {}
        self.by_token: dict[str, str] = {}
        self.fate_random = random.Random(config.seed)
        """Draws for what happens after acceptance (lost callbacks, undelivered), apart from the answers' draws,
        so the answers a seed gives do not depend on how background callbacks interleave with the sends."""

    def reseed(self) -> None:
        super().reseed()
        self.fate_random = random.Random(self.config.seed)

    def clear(self) -> None:
        self.cancel_tasks()
        self.messages.clear()
        self.by_token.clear()

    def received(self, to: str | None = None) -> list[dict[str, Any]]:
        """The messages kept (to ``to`` only, if given), as ``GET /sink/messages`` lists them."""
        return [message.listing() for message in self.messages.values() if to in (None, message.to)]


async def _post_callback(state: SmsSinkState, message: StoredSms) -> None:
    """One status callback, signed like Twilio signs them; the outcome is kept on the message for inspection."""
    if not message.status_callback or state.http is None:
        return
    params = {
        "MessageSid": message.sid,
        "SmsSid": message.sid,
        "AccountSid": message.account_sid,
        "MessageStatus": message.status,
        "SmsStatus": message.status,
        "To": message.to,
        "From": message.from_,
        "ApiVersion": "2010-04-01",
    }
    if message.error_code is not None:
        params["ErrorCode"] = str(message.error_code)
    await state.status_callback(
        message.status_callback,
        params,
        status=message.status,
        loss_rate=state.config.callback_loss_rate,
        draws=state.fate_random,
        kept=message.callbacks,
    )


async def _progress(state: SmsSinkState, message: StoredSms) -> None:
    """queued → sent → delivered (or undelivered/failed), a callback at each step after queued."""
    delay = state.config.callback_delay_seconds
    await asyncio.sleep(delay)
    message.status, message.sent_at = "sent", datetime.now(UTC)
    await _post_callback(state, message)
    await asyncio.sleep(delay)
    if message.to in state.config.unreachable_numbers:
        message.status, message.error_code = "failed", 30006
    elif state.fate_random.random() < state.config.undelivered_rate:
        message.status, message.error_code = "undelivered", 30003
    else:
        message.status = "delivered"
    await _post_callback(state, message)


def _refusal(state: SmsSinkState, to: str | None, from_: str | None, body: str | None) -> JSONResponse | None:
    """Twilio's 400 answer for a message it would not take, or None."""
    if not to or not E164.match(to):
        return twilio_error(400, 21211, f"The 'To' number {'is missing' if not to else 'is not valid'}.")
    if not from_:
        return twilio_error(400, 21603)
    if not body:
        return twilio_error(400, 21602)
    if len(body) > 1600:
        return twilio_error(400, 21617)
    if to in state.config.opted_out_numbers:
        return twilio_error(400, 21610)
    return None


def _listed(message: StoredSms, query: Mapping[str, str]) -> bool:
    """Twilio's list filters: exact ``To`` / ``From``; ``DateSent`` (``<``, ``>`` inclusive) on the GMT sent date."""
    if "To" in query and message.to != query["To"]:
        return False
    if "From" in query and message.from_ != query["From"]:
        return False
    bounds = {
        name: date.fromisoformat(query[name][:10]) for name in ("DateSent", "DateSent<", "DateSent>") if name in query
    }
    if not bounds:
        return True
    if message.sent_at is None:
        return False
    sent = message.sent_at.astimezone(UTC).date()
    return (
        sent == bounds.get("DateSent", sent)
        and sent <= bounds.get("DateSent<", sent)
        and sent >= bounds.get("DateSent>", sent)
    )


def create_sms_sink_app(*, account_sid: str, auth_token: str, config: SmsSinkConfig | None = None) -> FastAPI:
    """The sink as an ASGI app; its state is ``app.state.sink`` (:class:`SmsSinkState`)."""
    state = SmsSinkState(account_sid=account_sid, auth_token=auth_token, config=config or SmsSinkConfig())

    app = FastAPI(title="Local SMS sink (Twilio Messages API shape)", lifespan=webhook_lifespan(state))
    app.state.sink = state

    @app.post(API_PREFIX + "/Messages.json", response_model=None)
    async def create_message(
        *,
        account_sid: str,
        to: Annotated[str | None, Form(alias="To")] = None,
        from_: Annotated[str | None, Form(alias="From")] = None,
        body: Annotated[str | None, Form(alias="Body")] = None,
        status_callback: Annotated[str | None, Form(alias="StatusCallback")] = None,
        authorization: Annotated[str | None, Header()] = None,
        idempotency_token: Annotated[str | None, Header(alias=IDEMPOTENCY_HEADER)] = None,
    ) -> JSONResponse:
        if (refused := state.refusal(account_sid, authorization)) is not None:
            return refused
        if state.config.dedupe and idempotency_token and idempotency_token in state.by_token:
            return JSONResponse(state.messages[state.by_token[idempotency_token]].twilio_json(), status_code=201)
        if state.config.response_delay_seconds:
            await asyncio.sleep(state.config.response_delay_seconds)
        if state.random.random() < state.config.failure_rate:
            http_status, code = state.random.choice(TEMPORARY_FAILURES)
            return twilio_error(http_status, code)
        refusal = _refusal(state, to, from_, body)
        if refusal is not None or to is None or from_ is None or body is None:
            return refusal or twilio_error(400, 21211)
        message = StoredSms(
            sid="SM" + secrets.token_hex(16),
            account_sid=account_sid,
            to=to,
            from_=from_,
            body=body,
            status="queued",
            idempotency_token=idempotency_token,
            status_callback=status_callback,
            received_at=datetime.now(UTC),
        )
        state.messages[message.sid] = message
        if idempotency_token:
            state.by_token[idempotency_token] = message.sid
        state.spawn(_progress(state, message))
        return JSONResponse(message.twilio_json(), status_code=201)

    @app.get(API_PREFIX + "/Messages/{message_sid}.json", response_model=None)
    async def fetch_message(
        account_sid: str, message_sid: str, authorization: Annotated[str | None, Header()] = None
    ) -> JSONResponse:
        if (refused := state.refusal(account_sid, authorization)) is not None:
            return refused
        message = state.messages.get(message_sid)
        if message is None:
            return twilio_error(404, 20404)
        return JSONResponse(message.twilio_json())

    @app.get(API_PREFIX + "/Messages.json", response_model=None)
    async def list_messages_like_twilio(
        account_sid: str, request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> JSONResponse:
        def choose(query: QueryParams) -> list[StoredSms]:
            chosen = [message for message in state.messages.values() if _listed(message, query)]
            return sorted(chosen, key=lambda message: message.received_at, reverse=True)

        return twilio_list(
            state,
            request,
            account_sid=account_sid,
            authorization=authorization,
            key="messages",
            choose=choose,
            invalid="Invalid filter",
        )

    add_sink_routes(app, "messages", state)
    return app


class SmsSink(TwilioSink[SmsSinkState]):
    """The SMS sink on a local port, started and stopped from the caller's event loop."""

    def __init__(
        self,
        *,
        account_sid: str = "ACsink00000000000000000000000000",
        auth_token: str | None = None,
        config: SmsSinkConfig | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
    ) -> None:
        super().__init__(
            lambda sid, token: create_sms_sink_app(account_sid=sid, auth_token=token, config=config),
            account_sid=account_sid,
            auth_token=auth_token,
            host=host,
            port=port,
        )

    def messages(self) -> list[dict[str, Any]]:
        return self.state.received()

    def configure(self, **changes: Any) -> SmsSinkConfig:
        return self.state.configure(changes)

    def clear(self) -> None:
        self.state.clear()
