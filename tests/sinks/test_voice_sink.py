"""The local voice sink over real HTTP, driven by delivery's Twilio voice client: calls as Twilio places them, signed
webhooks, a person who presses digits, a machine that never does, busy lines, lists, and no deduplication."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response

from devservers.ports import free_port
from devservers.sinks.http_server import EmbeddedHttpServer
from devservers.sinks.voice import VoiceSink, VoiceSinkConfig, config_from_environment
from services.delivery.providers.base import PermanentProviderError
from services.delivery.providers.twilio.voice import OutboundCall, TwilioVoiceProvider, call_receipt, is_machine
from shared.events import DeliveryStatus
from shared.twilio import signature_is_valid

pytestmark = pytest.mark.integration

SID = "ACvoicesinktest"
TOKEN = "voice-sink-test-token"
VICTIM = "+15005550101"
OURS = "+15005550006"
GATHER = (
    '<?xml version="1.0"?><Response><Gather input="dtmf" numDigits="4" actionOnEmptyResult="true" action="{action}">'
    '<Say language="en-US">Enter your PIN.</Say></Gather><Say>Goodbye.</Say></Response>'
)

MENU = (
    '<Response><Say>Welcome.</Say><Gather input="dtmf" finishOnKey="#" actionOnEmptyResult="true" action="{action}">'
    "<Say>Enter the number, then pound.</Say></Gather><Hangup/><Say>Never said.</Say></Response>"
)
HOTLINE = "+18005550100"


@dataclass
class Webhooks:
    """Our side of the call: serves TwiML, records every webhook and whether its signature was right."""

    base: str
    received: list[tuple[str, dict[str, str], bool]] = field(default_factory=list)

    def of(self, path: str) -> list[dict[str, str]]:
        return [form for name, form, _ in self.received if name == path]


@pytest.fixture
async def webhooks() -> AsyncIterator[Webhooks]:
    port = free_port()
    hooks = Webhooks(base=f"http://127.0.0.1:{port}")
    app = FastAPI()

    def recorded(path: str, answer: Callable[[dict[str, str]], str]) -> None:
        async def endpoint(request: Request) -> Response:
            form = {key: str(value) for key, value in (await request.form()).items()}
            valid = signature_is_valid(TOKEN, str(request.url), form, request.headers.get("X-Twilio-Signature"))
            hooks.received.append((path, form, valid))
            return Response(answer(form), media_type="application/xml")

        app.post(path)(endpoint)

    recorded("/twiml", lambda _: GATHER.format(action=f"{hooks.base}/action?ref=a1&amp;try=1"))
    recorded("/action", lambda form: f"<Response><Say>You pressed {form.get('Digits') or 'nothing'}.</Say></Response>")
    recorded("/status", lambda _: "")
    recorded("/menu", lambda _: MENU.format(action=f"{hooks.base}/action"))
    recorded("/markup", lambda _: "<Response><Say>Hello <b>there</b></Say></Response>")
    recorded("/nested", lambda _: f'<Response><Gather action="{hooks.base}/action"><Dial>+1</Dial></Gather></Response>')
    recorded("/digits", lambda _: '<Response><Gather numDigits="four"><Say>PIN</Say></Gather></Response>')
    server = EmbeddedHttpServer(app, host="127.0.0.1", port=port)
    await server.start()
    yield hooks
    await server.stop()


@pytest.fixture
async def sink() -> AsyncIterator[VoiceSink]:
    config = VoiceSinkConfig(seed=3, ring_seconds=0.01, gather_wait_seconds=0.3)
    async with VoiceSink(account_sid=SID, auth_token=TOKEN, config=config) as running:
        yield running


@pytest.fixture
async def provider(sink: VoiceSink) -> AsyncIterator[TwilioVoiceProvider]:
    client = TwilioVoiceProvider(name="local", account_sid=SID, auth_token=TOKEN, from_number=OURS, base_url=sink.url)
    yield client
    await client.close()


async def finished(sink: VoiceSink, sid: str, timeout: float = 5.0) -> dict[str, Any]:
    """The call once it ended and (for ours) its final status callback was answered."""
    async with asyncio.timeout(timeout):
        while True:
            call = next(call for call in sink.calls() if call["sid"] == sid)
            final_reported = any(callback["status"] == call["status"] for callback in call["callbacks"])
            if call["end_time"] is not None and (call["direction"] == "inbound" or final_reported):
                return call
            await asyncio.sleep(0.02)


def outbound(webhooks: Webhooks, to: str = VICTIM) -> OutboundCall:
    return OutboundCall(
        to=to,
        twiml="",
        url=f"{webhooks.base}/twiml",
        reference="a1",
        status_callback_url=f"{webhooks.base}/status?ref=a1",
    )


async def test_a_person_answers_hears_the_twiml_and_keys_in_digits_every_webhook_signed(
    sink: VoiceSink, provider: TwilioVoiceProvider, webhooks: Webhooks
) -> None:
    await httpx.AsyncClient(base_url=sink.url).post("/sink/press", json={"number": VICTIM, "digits": ["4821"]})
    receipt = await provider.call(outbound(webhooks))
    call = await finished(sink, receipt.provider_message_id)
    assert call["status"] == "completed"
    assert call["answered_by"] == "human"
    assert call["pressed"] == ["4821"]
    assert call["text"] == "Enter your PIN. You pressed 4821."
    assert call["reference"] == "a1"
    assert [form["Digits"] for form in webhooks.of("/action")] == ["4821"]
    statuses = [form["CallStatus"] for form in webhooks.of("/status")]
    assert statuses == ["initiated", "ringing", "in-progress", "completed"]
    assert all(valid for _, _, valid in webhooks.received)
    assert await provider.fetch_status(receipt.provider_message_id) == "completed"


async def test_a_machine_gets_the_message_and_never_presses_anything(
    sink: VoiceSink, provider: TwilioVoiceProvider, webhooks: Webhooks
) -> None:
    sink.configure(answers={VICTIM: "machine"})
    await httpx.AsyncClient(base_url=sink.url).post("/sink/press", json={"number": VICTIM, "digits": ["4821"]})
    receipt = await provider.call(outbound(webhooks))
    call = await finished(sink, receipt.provider_message_id)
    assert call["answered_by"] == "machine_end_beep"
    assert is_machine(str(call["answered_by"]))
    assert call["pressed"] == []
    assert webhooks.of("/twiml")[0]["AnsweredBy"] == "machine_end_beep"
    assert [form["Digits"] for form in webhooks.of("/action")] == [""]


@pytest.mark.parametrize("answer", ["busy", "no-answer", "failed"])
async def test_an_unanswered_call_ends_with_its_status_and_reads_no_twiml(
    sink: VoiceSink, provider: TwilioVoiceProvider, webhooks: Webhooks, answer: str
) -> None:
    sink.configure(answers={VICTIM: answer})
    receipt = await provider.call(outbound(webhooks))
    call = await finished(sink, receipt.provider_message_id)
    assert call["status"] == answer
    assert webhooks.of("/twiml") == []
    assert webhooks.of("/status")[-1]["CallStatus"] == answer
    mapped = call_receipt(answer)
    assert mapped is not None
    assert mapped.status is DeliveryStatus.TEMPORARY_FAILURE


async def test_every_post_is_a_new_call_and_the_list_finds_them_newest_first(
    sink: VoiceSink, provider: TwilioVoiceProvider, webhooks: Webhooks
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    first = await provider.call(outbound(webhooks))
    second = await provider.call(outbound(webhooks))
    other = await provider.call(outbound(webhooks, to="+15005550199"))
    assert first.provider_message_id != second.provider_message_id
    placed = await provider.placed_since(VICTIM, since)
    assert {receipt.provider_message_id for receipt in placed} == {
        first.provider_message_id,
        second.provider_message_id,
    }
    assert other.provider_message_id not in {receipt.provider_message_id for receipt in placed}
    assert await provider.placed_since(VICTIM, datetime.now(UTC) + timedelta(hours=1)) == []


async def test_twilios_refusals(sink: VoiceSink, webhooks: Webhooks) -> None:
    async with httpx.AsyncClient(base_url=sink.url) as anonymous:
        calls = f"/2010-04-01/Accounts/{SID}/Calls.json"
        assert (await anonymous.post(calls, data={"To": VICTIM, "From": OURS, "Url": webhooks.base})).status_code == 401
        missing = await anonymous.post(calls, data={"To": VICTIM, "From": OURS}, auth=(SID, TOKEN))
        assert (missing.status_code, missing.json()["code"]) == (400, 21205)
        too_long = await anonymous.post(
            calls, data={"To": VICTIM, "From": OURS, "Twiml": "x" * 4001}, auth=(SID, TOKEN)
        )
        assert too_long.status_code == 400
    bad = TwilioVoiceProvider(name="local", account_sid=SID, auth_token=TOKEN, from_number=OURS, base_url=sink.url)
    with pytest.raises(PermanentProviderError) as refused:
        await bad.call(OutboundCall(to="555", twiml="<Response/>", url=None, reference="a1"))
    assert refused.value.code == "21211"
    await bad.close()


async def dial_in(sink: VoiceSink, digits: list[str], to: str = HOTLINE) -> httpx.Response:
    async with httpx.AsyncClient(base_url=sink.url) as client:
        return await client.post("/sink/inbound-calls", json={"from": VICTIM, "to": to, "digits": digits})


async def test_an_inbound_caller_dials_our_number_and_keys_in_what_it_was_given(
    sink: VoiceSink, webhooks: Webhooks
) -> None:
    sink.configure(inbound_numbers={HOTLINE: f"{webhooks.base}/menu"})
    answer = await dial_in(sink, ["1234#99"])
    assert answer.status_code == 201
    call = answer.json()
    assert call["direction"] == "inbound"
    assert [entry["text"] for entry in call["said"]] == [
        "Welcome.",
        "Enter the number, then pound.",
        "You pressed 1234.",
    ]
    assert call["pressed"] == ["1234#99"]
    assert call["ended_by"] == "end"
    [incoming] = webhooks.of("/menu")
    assert incoming["Direction"] == "inbound"
    assert incoming["From"] == VICTIM
    [action] = webhooks.of("/action")
    assert action["Digits"] == "1234"  # the finishing key is not among the digits, as at Twilio
    assert action["FinishedOnKey"] == "#"
    assert all(valid for _, _, valid in webhooks.received)
    assert call["sid"] in {listed["sid"] for listed in sink.calls()}


async def test_a_silent_caller_times_out_and_a_hangup_ends_the_call(sink: VoiceSink, webhooks: Webhooks) -> None:
    sink.configure(inbound_numbers={HOTLINE: f"{webhooks.base}/menu"})
    call = (await dial_in(sink, [])).json()
    assert webhooks.of("/action")[0]["Digits"] == ""  # actionOnEmptyResult: the action hears the silence
    sink.configure(inbound_numbers={HOTLINE: f"{webhooks.base}/twiml"})
    call = (await dial_in(sink, [])).json()
    assert call["ended_by"] == "end"
    assert "Never said." not in call["text"]


@pytest.mark.parametrize(
    ("path", "problem"),
    [("/markup", "<Say> holds markup"), ("/nested", "cannot be inside <Gather>"), ("/digits", "numDigits")],
)
async def test_twiml_that_breaks_the_schema_ends_the_call(
    sink: VoiceSink, webhooks: Webhooks, path: str, problem: str
) -> None:
    sink.configure(inbound_numbers={HOTLINE: f"{webhooks.base}{path}"})
    call = (await dial_in(sink, ["1"])).json()
    assert call["ended_by"] == "error"
    assert call["said"] == []
    assert problem in call["errors"][0]
    assert call["errors"][0].startswith("12200")


async def test_an_inbound_call_to_a_number_we_do_not_have_or_with_keys_no_keypad_has(sink: VoiceSink) -> None:
    assert (await dial_in(sink, ["1"], to="+18005550111")).status_code == 404
    sink.configure(inbound_numbers={HOTLINE: "http://127.0.0.1:9/hotline"})
    assert (await dial_in(sink, ["A-1234#"])).status_code == 422


def test_configuration_from_the_environment() -> None:
    config = config_from_environment(
        {"VOICE_SINK_ANSWERS": '{"+15005550101": "machine"}', "VOICE_SINK_BUSY_RATE": "0.5"}
    )
    assert config.answers == {VICTIM: "machine"}
    assert config.busy_rate == 0.5
    hotline = config_from_environment({"VOICE_SINK_INBOUND_NUMBERS": f'{{"{HOTLINE}": "http://127.0.0.1:8002/v"}}'})
    assert hotline.inbound_numbers == {HOTLINE: "http://127.0.0.1:8002/v"}
