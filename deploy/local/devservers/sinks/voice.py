"""A local voice provider with the Twilio Programmable Voice shape, for ``make run`` and tests: it plays the callee.

- ``POST /2010-04-01/Accounts/{sid}/Calls.json`` (form: To, From, Url or Twiml, StatusCallback, StatusCallbackEvent
  repeated, MachineDetection; HTTP basic auth, 401 otherwise) answers 201 with a Call resource (``CA…`` sid, status
  ``queued``). Every accepted POST is a new call: no deduplication, as at Twilio.
- Then the call rings and is answered as the number is configured (:class:`VoiceSinkConfig`): by a person, by a
  machine, or not (busy, no-answer, failed). Status callbacks (initiated, ringing, answered, completed, as asked for
  with ``StatusCallbackEvent``; the final one always) are POSTed signed with the account's auth token
  (``X-Twilio-Signature``), ``AnsweredBy`` included when ``MachineDetection`` was asked for.
- An answered call fetches its ``Url`` (signed POST with CallSid, From, To, CallStatus, AnsweredBy) or reads its
  ``Twiml``, and plays it: ``<Say>`` is recorded as said; ``<Gather>`` takes the next digits queued for the call's
  number (``POST /sink/press``), or none after its timeout, and POSTs them to its ``action`` (signed) unless nothing
  was pressed and ``actionOnEmptyResult`` is not true; ``<Redirect>`` fetches again; ``<Dial>`` is recorded and ends
  the call; ``<Hangup>`` or the end of the document ends it. A machine never presses anything.
- ``POST /sink/inbound-calls`` ({"from", "to", "digits"}) plays a caller dialling one of our numbers: the number's
  webhook (``inbound_numbers`` in the config: number -> URL, as a Twilio number's "A call comes in" URL) is POSTed
  like Twilio's incoming-call webhook (signed, ``Direction=inbound``), its TwiML played; each ``<Gather>`` takes the
  next entry of ``digits`` (keypad keys only; "" or none left: the Gather times out), cut at its ``finishOnKey`` and
  ``numDigits`` as Twilio does. The answer is the whole call: every ``<Say>``, what was pressed, ``<Dial>`` numbers,
  how it ended; it is listed under ``/sink/calls`` too. A number without a webhook answers 404.
- Harsh like Twilio: TwiML that is not valid XML, not a ``<Response>``, or breaks TwiML's schema (an unknown verb,
  a ``<Say>`` over 4,096 characters or with markup inside, a ``<Gather>`` with a bad ``numDigits``, ``timeout``,
  ``finishOnKey``, ``input`` or nested verb, an empty ``<Redirect>`` or ``<Dial>``) ends the call, recorded under
  ``errors`` with Twilio's error code (12100 parse failure, 12200 schema).
- ``GET …/Calls/{CallSid}.json`` and ``GET …/Calls.json`` (To, From, newest first, paged) as Twilio answers them.
- ``GET /sink/calls`` (optional ``?to=``) lists the calls with what was said and pressed; ``DELETE`` clears.
- ``GET``/``POST /sink/config`` read and change :class:`VoiceSinkConfig`; ``VOICE_SINK_<FIELD>`` sets it at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urljoin
from xml.etree.ElementTree import Element

from defusedxml import ElementTree
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import QueryParams

from devservers.sinks import common
from devservers.sinks.common import (
    API_PREFIX,
    E164,
    RFC2822,
    WEBHOOK_ERRORS,
    TwilioSink,
    TwilioSinkState,
    callback_reference,
    twilio_error,
    twilio_list,
    webhook_lifespan,
)
from devservers.sinks.http_server import add_sink_routes

logger = logging.getLogger(__name__)

Answer = Literal["person", "machine", "busy", "no-answer", "failed"]
AuthorizationHeader = Annotated[str | None, Header()]
MAX_TWIML_CHARACTERS = 4000
MAX_PLAYED_VERBS = 200
MAX_SAY_CHARACTERS = 4096
KEYPAD = r"^[0-9*#]*$"
VERBS = frozenset({"Say", "Play", "Pause", "Gather", "Redirect", "Dial", "Hangup", "Reject"})
GATHER_NESTED = frozenset({"Say", "Play", "Pause"})
DIAL_NOUNS = frozenset({"Number", "Client", "Sip", "Conference", "Queue"})
"""A TwiML loop (Redirect to itself, an action answering the same Gather forever) ends the call here."""


class VoiceSinkConfig(BaseModel):
    """Who answers. A number in ``answers`` always answers so; others draw from the rates (seeded), else a person."""

    model_config = ConfigDict(extra="forbid")

    answers: dict[str, Answer] = Field(default_factory=dict, description="Per number: how the call is answered.")
    machine_rate: float = Field(default=0.0, ge=0, le=1)
    busy_rate: float = Field(default=0.0, ge=0, le=1)
    no_answer_rate: float = Field(default=0.0, ge=0, le=1)
    failure_rate: float = Field(default=0.0, ge=0, le=1, description="Calls POSTs answered 503 (temporary).")
    callback_loss_rate: float = Field(default=0.0, ge=0, le=1, description="Status callbacks never sent (missed).")
    ring_seconds: float = Field(default=0.05, ge=0, le=60, description="Between queued, ringing and the answer.")
    gather_wait_seconds: float = Field(
        default=0.5, ge=0, le=60, description="How long a <Gather> waits for queued digits (its timeout, scaled)."
    )
    seed: int | None = None
    inbound_numbers: dict[str, str] = Field(
        default_factory=dict, description="Our numbers callers can dial: number -> the webhook its calls POST to."
    )


def config_from_environment(environ: Mapping[str, str] | None = None) -> VoiceSinkConfig:
    """``VOICE_SINK_MACHINE_RATE=0.2``, ``VOICE_SINK_ANSWERS={"+15005550100": "machine"}`` (JSON objects) and so on."""
    return common.config_from_environment(VoiceSinkConfig, "VOICE_SINK", os.environ if environ is None else environ)


@dataclass
class StoredCall:
    sid: str
    account_sid: str
    to: str
    from_: str
    direction: str
    url: str | None
    twiml: str | None
    status_callback: str | None
    callback_events: frozenset[str]
    machine_detection: bool
    created_at: datetime
    status: str = "queued"
    answered_by: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    said: list[dict[str, str]] = field(default_factory=list)
    pressed: list[str] = field(default_factory=list)
    dialed: list[str] = field(default_factory=list)
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    script: deque[str] | None = None
    """A caller's keys, one entry per ``<Gather>`` (inbound calls); None: digits come from ``/sink/press``."""
    ended_by: str | None = None
    """"hangup", "dial", "end" (of the document), "error" (refused TwiML or a webhook that failed) or a status."""

    @property
    def reference(self) -> str | None:
        """The ``ref`` query parameter of the status-callback URL (delivery's attempt id), if any."""
        return callback_reference(self.status_callback)

    def twilio_json(self) -> dict[str, Any]:
        return {
            "sid": self.sid,
            "account_sid": self.account_sid,
            "to": self.to,
            "from": self.from_,
            "status": self.status,
            "direction": self.direction,
            "answered_by": self.answered_by,
            "api_version": "2010-04-01",
            "date_created": self.created_at.strftime(RFC2822),
            "date_updated": datetime.now(UTC).strftime(RFC2822),
            "start_time": self.started_at.strftime(RFC2822) if self.started_at else None,
            "end_time": self.ended_at.strftime(RFC2822) if self.ended_at else None,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Calls/{self.sid}.json",
        }

    def listing(self) -> dict[str, Any]:
        return self.twilio_json() | {
            "reference": self.reference,
            "said": list(self.said),
            "text": " ".join(entry["text"] for entry in self.said),
            "pressed": list(self.pressed),
            "dialed": list(self.dialed),
            "ended_by": self.ended_by,
            "callbacks": list(self.callbacks),
            "errors": list(self.errors),
        }


class VoiceSinkState(TwilioSinkState[VoiceSinkConfig]):
    def __init__(self, *, account_sid: str, auth_token: str, config: VoiceSinkConfig) -> None:
        super().__init__(account_sid=account_sid, auth_token=auth_token, config=config)
        self.calls: dict[str, StoredCall] = {}
        self.presses: dict[str, deque[str]] = {}
        self.pressed = asyncio.Event()

    def clear(self) -> None:
        self.cancel_tasks()
        self.calls.clear()
        self.presses.clear()

    def received(self, to: str | None = None) -> list[dict[str, Any]]:
        """The calls kept (to ``to`` only, if given), as ``GET /sink/calls`` lists them."""
        return [call.listing() for call in self.calls.values() if to in (None, call.to)]

    def answer_of(self, number: str) -> Answer:
        configured = self.config.answers.get(number)
        if configured is not None:
            return configured
        draw = self.random.random()
        for answer, rate in (
            ("machine", self.config.machine_rate),
            ("busy", self.config.busy_rate),
            ("no-answer", self.config.no_answer_rate),
        ):
            if draw < rate:
                return answer  # type: ignore[return-value]
            draw -= rate
        return "person"


def _call_params(call: StoredCall) -> dict[str, str]:
    params = {
        "CallSid": call.sid,
        "AccountSid": call.account_sid,
        "From": call.from_,
        "To": call.to,
        "CallStatus": call.status,
        "Direction": call.direction,
        "ApiVersion": "2010-04-01",
    }
    if call.answered_by is not None:
        params["AnsweredBy"] = call.answered_by
    return params


async def _status_callback(state: VoiceSinkState, call: StoredCall, event: str, *, final: bool = False) -> None:
    if not call.status_callback or (event not in call.callback_events and not final):
        return
    params = _call_params(call) | {"CallbackSource": "call-progress-events", "Timestamp": _now_rfc2822()}
    if call.ended_at and call.started_at:
        params["CallDuration"] = str(int((call.ended_at - call.started_at).total_seconds()))
    await state.status_callback(
        call.status_callback,
        params,
        status=call.status,
        loss_rate=state.config.callback_loss_rate,
        draws=state.random,
        kept=call.callbacks,
    )


def _now_rfc2822() -> str:
    return datetime.now(UTC).strftime(RFC2822)


async def _fetch_twiml(state: VoiceSinkState, call: StoredCall, url: str, extra: dict[str, str]) -> Element | None:
    try:
        answer = await state.signed_post(url, _call_params(call) | extra)
    except WEBHOOK_ERRORS as error:
        call.errors.append(f"{url}: {type(error).__name__}")
        return None
    if answer.status != 200:
        call.errors.append(f"{url}: HTTP {answer.status}")
        return None
    return _parse(call, answer.text)


def _parse(call: StoredCall, twiml: str) -> Element | None:
    try:
        root: Element = ElementTree.fromstring(twiml)
    except ElementTree.ParseError as error:
        call.errors.append(f"TwiML is not valid XML: {error}")
        return None
    if root.tag != "Response":
        call.errors.append(f"12100: TwiML root is <{root.tag}>, not <Response>")
        return None
    problem = _schema_problem(root)
    if problem is not None:
        call.errors.append(f"12200: {problem}")
        return None
    return root


def _schema_problem(root: Element) -> str | None:
    """What breaks TwiML's schema in ``root`` (the first thing found), as Twilio refuses it; None when valid."""
    for verb in root:
        if verb.tag not in VERBS:
            return f"<{verb.tag}> is not a TwiML verb"
        problem = {"Say": _say_problem, "Gather": _gather_problem, "Dial": _dial_problem}.get(verb.tag, _bare_problem)(
            verb
        )
        if problem is not None:
            return problem
    return None


def _say_problem(say: Element) -> str | None:
    text = (say.text or "").strip()
    if len(say):
        return "<Say> holds markup"
    if not text:
        return "<Say> is empty"
    if len(text) > MAX_SAY_CHARACTERS:
        return f"<Say> is {len(text)} characters, over {MAX_SAY_CHARACTERS}"
    return None


def _positive(value: str | None) -> bool:
    return value is None or (value.isdigit() and int(value) > 0)


def _gather_problem(gather: Element) -> str | None:
    finish = gather.get("finishOnKey")
    timeout = gather.get("timeout")
    checks = (
        (set((gather.get("input") or "dtmf").split()) <= {"dtmf", "speech"}, "input is not dtmf or speech"),
        (_positive(gather.get("numDigits")), "numDigits is not a positive number"),
        (_positive(timeout) or timeout == "auto", "timeout is not a positive number of seconds"),
        (finish is None or (len(finish) <= 1 and finish in "0123456789*#"), "finishOnKey is not one keypad key"),
        (gather.get("method", "POST").upper() in ("GET", "POST"), "method is not GET or POST"),
        (gather.get("actionOnEmptyResult", "false").lower() in ("true", "false"), "actionOnEmptyResult is not a bool"),
    )
    for valid, problem in checks:
        if not valid:
            return f"<Gather> {problem}"
    for nested in gather:
        if nested.tag not in GATHER_NESTED:
            return f"<{nested.tag}> cannot be inside <Gather>"
        if nested.tag == "Say" and (said := _say_problem(nested)) is not None:
            return said
    return None


def _dial_problem(dial: Element) -> str | None:
    if any(noun.tag not in DIAL_NOUNS for noun in dial):
        return "<Dial> holds something that is not a number, client, SIP address, conference or queue"
    if not (dial.text or "").strip() and not len(dial):
        return "<Dial> has nobody to call"
    return None


def _bare_problem(verb: Element) -> str | None:
    if len(verb):
        return f"<{verb.tag}> cannot hold other elements"
    if verb.tag == "Redirect" and not (verb.text or "").strip():
        return "<Redirect> has no URL"
    return None


async def _play(state: VoiceSinkState, call: StoredCall, document: Element | None, base_url: str | None) -> None:
    """Execute TwiML verbs in order, following Gather actions and Redirects, until a hang-up or the end."""
    played = 0
    if document is None:
        call.ended_by = "error"
        return
    verbs = deque(document)
    while verbs and played < MAX_PLAYED_VERBS:
        verb = verbs.popleft()
        played += 1
        if verb.tag == "Say":
            call.said.append({"text": (verb.text or "").strip(), "language": verb.get("language", "en-US")})
        elif verb.tag == "Gather":
            followed = await _gather(state, call, verb, base_url)
            if followed is not None:  # the action's TwiML replaces the rest of the document, as at Twilio
                if followed[1] is None:
                    call.ended_by = "error"
                    return
                verbs, base_url = deque(followed[1]), followed[0]
        elif verb.tag == "Redirect":
            url = urljoin(base_url or "", (verb.text or "").strip())
            redirected = await _fetch_twiml(state, call, url, {})
            if redirected is None:
                call.ended_by = "error"
                return
            verbs, base_url = deque(redirected), url
        elif verb.tag == "Dial":
            call.dialed.extend([(verb.text or "").strip()] if not len(verb) else [(n.text or "").strip() for n in verb])
            call.ended_by = "dial"
            return
        elif verb.tag in ("Hangup", "Reject"):
            call.ended_by = "hangup"
            return
    call.ended_by = "end"


async def _gather(
    state: VoiceSinkState, call: StoredCall, gather: Element, base_url: str | None
) -> tuple[str, list[Element] | None] | None:
    """Say what the Gather says, take the keys pressed (a person only), and return the action's URL and TwiML
    (None: refused); None when no action is called (the call goes on after the Gather)."""
    for nested in gather:
        if nested.tag == "Say":
            call.said.append({"text": (nested.text or "").strip(), "language": nested.get("language", "en-US")})
    person = call.answered_by in (None, "human")
    keys = await _next_keys(state, call) if person else ""
    if keys:
        call.pressed.append(keys)
    digits, finished_on = _gathered(keys, gather.get("finishOnKey", "#"), gather.get("numDigits"))
    action = gather.get("action")
    if not action or (not digits and gather.get("actionOnEmptyResult", "false").lower() != "true"):
        return None
    url = urljoin(base_url or "", action)
    document = await _fetch_twiml(state, call, url, {"Digits": digits, "FinishedOnKey": finished_on})
    return url, None if document is None else list(document)


def _gathered(keys: str, finish_on_key: str, num_digits: str | None) -> tuple[str, str]:
    """What Twilio reports of the keys pressed at a Gather: the digits before its finishing key (which is not
    among them), at most ``numDigits`` of them; and the finishing key, if that ended the Gather."""
    limit = int(num_digits) if num_digits else None
    if finish_on_key and finish_on_key in keys:
        before = keys.split(finish_on_key, 1)[0]
        if limit is None or len(before) < limit:
            return before, finish_on_key
    return keys[:limit], ""


async def _next_keys(state: VoiceSinkState, call: StoredCall) -> str:
    """A caller's next scripted entry (none left: silence), else the digits queued for the callee's number."""
    if call.script is not None:
        return call.script.popleft() if call.script else ""
    return await _next_digits(state, call.to)


async def _next_digits(state: VoiceSinkState, number: str) -> str:
    """The next digits queued for ``number``, waiting up to the Gather's (scaled) timeout; "" when none come."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + state.config.gather_wait_seconds
    while True:
        queue = state.presses.get(number)
        if queue:
            return queue.popleft()
        remaining = deadline - loop.time()
        if remaining <= 0:
            return ""
        state.pressed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.pressed.wait(), remaining)


async def _run_call(state: VoiceSinkState, call: StoredCall) -> None:
    await asyncio.sleep(state.config.ring_seconds)
    call.status = "initiated"
    await _status_callback(state, call, "initiated")
    call.status = "ringing"
    await _status_callback(state, call, "ringing")
    await asyncio.sleep(state.config.ring_seconds)
    answer = "person" if call.direction == "inbound" else state.answer_of(call.to)
    if answer in ("busy", "no-answer", "failed"):
        call.status, call.ended_at = answer, datetime.now(UTC)
        await _status_callback(state, call, "completed", final=True)
        return
    call.status, call.started_at = "in-progress", datetime.now(UTC)
    if call.machine_detection:
        call.answered_by = "machine_end_beep" if answer == "machine" else "human"
    await _status_callback(state, call, "answered")
    if call.url:
        document = await _fetch_twiml(state, call, call.url, {})
    else:
        document = _parse(call, call.twiml or "")
    await _play(state, call, document, call.url)
    call.status, call.ended_at = "completed", datetime.now(UTC)
    await _status_callback(state, call, "completed", final=True)


def _refusal(form: Mapping[str, str], twiml: str | None, url: str | None) -> JSONResponse | None:
    to, from_ = form.get("To"), form.get("From")
    if not to or not E164.match(to):
        return twilio_error(400, 21211, f"The 'To' number {'is missing' if not to else 'is not valid'}.")
    if not from_:
        return twilio_error(400, 21213, "The 'From' phone number is required.")
    if not twiml and not url:
        return twilio_error(400, 21205, "Url parameter is required.")
    if twiml and len(twiml) > MAX_TWIML_CHARACTERS:
        return twilio_error(400, 21205, f"Twiml is longer than {MAX_TWIML_CHARACTERS} characters.")
    return None


class Presses(BaseModel):
    """Digits a person will key in, in order, at the next ``<Gather>`` prompts of calls with this number."""

    number: str = Field(pattern=E164.pattern)
    digits: list[str] = Field(min_length=1)


class InboundCall(BaseModel):
    """A caller dialling one of our numbers, and the keys they will press at each ``<Gather>`` in turn."""

    from_: str = Field(alias="from", pattern=E164.pattern)
    to: str = Field(pattern=E164.pattern)
    digits: list[Annotated[str, Field(pattern=KEYPAD, max_length=64)]] = Field(default_factory=list, max_length=100)


def create_voice_sink_app(
    *,
    account_sid: str,
    auth_token: str,
    config: VoiceSinkConfig | None = None,
) -> FastAPI:
    """The sink as an ASGI app; its state is ``app.state.sink`` (:class:`VoiceSinkState`)."""
    state = VoiceSinkState(account_sid=account_sid, auth_token=auth_token, config=config or VoiceSinkConfig())

    app = FastAPI(title="Local voice sink (Twilio Programmable Voice shape)", lifespan=webhook_lifespan(state))
    app.state.sink = state

    @app.post(API_PREFIX + "/Calls.json", response_model=None)
    async def create_call(
        account_sid: str, request: Request, authorization: AuthorizationHeader = None
    ) -> JSONResponse:
        if (refused := state.refusal(account_sid, authorization)) is not None:
            return refused
        form = await request.form()
        values = {key: str(value) for key, value in form.items()}
        if state.random.random() < state.config.failure_rate:
            return twilio_error(503, 20503)
        twiml, url = values.get("Twiml"), values.get("Url")
        refusal = _refusal(values, twiml, url)
        if refusal is not None:
            return refusal
        call = StoredCall(
            sid="CA" + secrets.token_hex(16),
            account_sid=account_sid,
            to=values["To"],
            from_=values["From"],
            direction="outbound-api",
            url=url,
            twiml=None if url else twiml,
            status_callback=values.get("StatusCallback"),
            callback_events=frozenset(str(event) for event in form.getlist("StatusCallbackEvent")),
            machine_detection=values.get("MachineDetection") in ("Enable", "DetectMessageEnd"),
            created_at=datetime.now(UTC),
        )
        state.calls[call.sid] = call
        state.spawn(_run_call(state, call))
        return JSONResponse(call.twilio_json(), status_code=201)

    @app.get(API_PREFIX + "/Calls/{call_sid}.json", response_model=None)
    async def fetch_call(account_sid: str, call_sid: str, authorization: AuthorizationHeader = None) -> JSONResponse:
        if (refused := state.refusal(account_sid, authorization)) is not None:
            return refused
        call = state.calls.get(call_sid)
        if call is None:
            return twilio_error(404, 20404)
        return JSONResponse(call.twilio_json())

    @app.get(API_PREFIX + "/Calls.json", response_model=None)
    async def list_calls_like_twilio(
        account_sid: str, request: Request, authorization: AuthorizationHeader = None
    ) -> JSONResponse:
        def choose(query: QueryParams) -> list[StoredCall]:
            chosen = [
                call
                for call in state.calls.values()
                if query.get("To", call.to) == call.to and query.get("From", call.from_) == call.from_
            ]
            return sorted(chosen, key=lambda call: call.created_at, reverse=True)

        return twilio_list(
            state,
            request,
            account_sid=account_sid,
            authorization=authorization,
            key="calls",
            choose=choose,
            invalid="Invalid paging",
        )

    @app.post("/sink/press", status_code=204)
    async def press(presses: Presses) -> None:
        state.presses.setdefault(presses.number, deque()).extend(presses.digits)
        state.pressed.set()

    @app.post("/sink/inbound-calls", status_code=201, response_model=None)
    async def inbound(caller: InboundCall) -> JSONResponse:
        webhook = state.config.inbound_numbers.get(caller.to)
        if webhook is None:
            return JSONResponse({"detail": f"{caller.to} is not one of our numbers (inbound_numbers)"}, 404)
        call = StoredCall(
            sid="CA" + secrets.token_hex(16),
            account_sid=state.account_sid,
            to=caller.to,
            from_=caller.from_,
            direction="inbound",
            url=webhook,
            twiml=None,
            status_callback=None,
            callback_events=frozenset(),
            machine_detection=False,
            created_at=datetime.now(UTC),
            script=deque(caller.digits),
        )
        state.calls[call.sid] = call
        await _run_call(state, call)
        return JSONResponse(call.listing(), status_code=201)

    add_sink_routes(app, "calls", state)
    return app


class VoiceSink(TwilioSink[VoiceSinkState]):
    """The voice sink on a local port, started and stopped from the caller's event loop."""

    def __init__(
        self,
        *,
        account_sid: str = "ACsink00000000000000000000000000",
        auth_token: str | None = None,
        config: VoiceSinkConfig | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
    ) -> None:
        super().__init__(
            lambda sid, token: create_voice_sink_app(account_sid=sid, auth_token=token, config=config),
            account_sid=account_sid,
            auth_token=auth_token,
            host=host,
            port=port,
        )

    def calls(self) -> list[dict[str, Any]]:
        return self.state.received()

    def configure(self, **changes: Any) -> VoiceSinkConfig:
        return self.state.configure(changes)
