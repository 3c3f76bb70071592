"""The hotline on the running stack, the voice sink playing a caller (keys in, TwiML out): the status of a known case
in English, a sealed one in Spanish ("no information"), contacts and a connection to victim services, registering
the phone with a PIN and then getting a call on the next release, stopping those calls by phone with the PIN (and
none on the next release); a caller over the rate limit; bad signatures."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from devservers.driver import SystemDriver, custody_record
from devservers.stack import HOTLINE_NUMBER
from services.subscription.hotline.domain import agency_code
from shared.twilio import twilio_signature

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

VICTIM_LINE = "+13125550188"
RESOURCES = {
    "contacts": [{"role": "hotline", "name": "County victim line", "phone": VICTIM_LINE, "hours": "24/7"}],
    "referrals": [{"name": "Casa Segura", "category": "shelter", "phone": "+13125550144"}],
}


def caller() -> str:
    """A number of its own for each caller: the rate limit counts per number."""
    return f"+1312555{uuid.uuid4().int % 10_000:04d}"


async def call_hotline(system: SystemDriver, number: str, digits: list[str]) -> dict[str, Any]:
    answer = await system.http.post(
        f"{system.stack.url('voice_sink')}/sink/inbound-calls",
        json={"from": number, "to": HOTLINE_NUMBER, "digits": digits},
        timeout=60,
    )
    assert answer.status_code == 201, answer.text
    call: dict[str, Any] = answer.json()
    assert call["errors"] == [], call["errors"]
    return call


async def status_known(system: SystemDriver, agency: str, case: str, *, known: bool) -> None:
    """Wait until subscription's lookup (the one the hotline uses) says what a caller should hear."""
    url = f"{system.stack.url('subscription')}/v1/agencies/{agency}/cases/case_number/{case}/status"
    deadline = time.monotonic() + 60
    while (await system.http.get(url)).status_code != (200 if known else 404):
        assert time.monotonic() < deadline, f"the lookup never said {'a status' if known else 'nothing'}"
        await asyncio.sleep(1.0)  # the lookup's rate limit counts these too


async def agency_with_case(system: SystemDriver, prefix: str, **fields: Any) -> tuple[str, str, str, str]:
    """A new agency with one booked case; its id, feed key, case number and the digits a caller keys in."""
    token = uuid.uuid4().hex[:8]
    agency, digits = f"{prefix}-{token}", str(10_000_000 + uuid.uuid4().int % 90_000_000)
    case = f"CR-{digits}"
    key = await system.create_agency(agency, **fields)
    await system.push(agency, key, [custody_record(f"b-{token}", case, "BOOKED")])
    await status_known(system, agency, case, known=True)
    return agency, key, case, digits


async def test_a_caller_hears_a_known_case_in_english_then_contacts_and_is_connected(system: SystemDriver) -> None:
    token = uuid.uuid4().hex[:8]
    agency = f"hot-{token}"
    key = await system.create_agency(agency)
    assert (await system.admin("PUT", f"/agencies/{agency}/resources", json=RESOURCES)).status_code == 200
    digits = str(10_000_000 + uuid.uuid4().int % 90_000_000)
    await system.push(agency, key, [custody_record(f"b-{token}", f"CR-{digits}", "BOOKED", facility="North Jail")])
    await status_known(system, agency, f"CR-{digits}", known=True)

    # The resources travel on agency.profile, the booking on custody.status-changed: either may reach subscription
    # first, so call again (from another number: the rate limit counts per caller) until the contacts are known.
    deadline = time.monotonic() + 60
    while True:
        call = await call_hotline(system, caller(), ["1", agency_code(agency) + "#", digits + "#", "2", "0"])
        if call["dialed"] == [VICTIM_LINE] or time.monotonic() > deadline:
            break
        await asyncio.sleep(1.0)
    text = call["text"]
    assert "not a way to report anyone" in text
    assert "call 911" in text
    assert f"the last status {agency} jail gave us is: in custody, North Jail" in text
    assert " ".join(digits) in text  # the number read back digit by digit
    assert "Hotline: County victim line. Phone: 1 3 1 2 5 5 5 0 1 8 8." in text
    assert "Safe place to stay: Casa Segura." in text
    assert call["dialed"] == [VICTIM_LINE]
    assert call["ended_by"] == "dial"
    assert {entry["language"] for entry in call["said"][4:]} == {"en-US"}


async def test_a_sealed_case_has_no_information_in_spanish_and_silence_ends_politely(system: SystemDriver) -> None:
    agency, key, case, digits = await agency_with_case(system, "hotseal")
    sealed = await system.http.post(
        f"{system.stack.url('ingest')}/v1/agencies/{agency}/sealed-subjects",
        json={"identifiers": [{"kind": "case_number", "value": case}]},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert sealed.status_code == 200, sealed.text
    await status_known(system, agency, case, known=False)

    call = await call_hotline(system, caller(), ["2", agency_code(agency) + "#", digits + "#"])
    text = call["text"]
    assert f"No tenemos información sobre el número {' '.join(digits)}" in text
    assert "bajo custodia" not in text
    assert "No escuchamos nada. Llame otra vez cuando quiera. Adiós." in text  # the menu heard nothing, twice
    assert call["ended_by"] == "hangup"
    assert {entry["language"] for entry in call["said"][4:]} == {"es-MX"}

    unknown = await call_hotline(system, caller(), ["2", agency_code(agency), "99999999999"])
    assert "No tenemos información sobre el número" in unknown["text"]  # a sealed case reads like an unknown one


async def test_a_caller_registers_with_a_pin_and_is_called_on_the_next_release(system: SystemDriver) -> None:
    agency, key, case, digits = await agency_with_case(system, "hotreg")
    number = caller()
    call = await call_hotline(
        system, number, ["1", agency_code(agency) + "#", digits + "#", "1", "1234", "4821", "4812", "4821", "4821"]
    )
    text = call["text"]
    assert "That PIN is too easy to guess." in text
    assert "The two PINs were not the same." in text
    assert f"This phone is registered. We will call you when {agency} jail changes the status" in text
    assert call["ended_by"] == "hangup"
    await system.wait_for_matching(agency, reachable_contacts=1)

    pushed = time.monotonic()
    await system.push(agency, key, [custody_record(f"r-{uuid.uuid4().hex[:6]}", case, "RELEASED_BOND")])
    deadline = pushed + 30
    while True:
        answer = await system.http.get(f"{system.stack.url('voice_sink')}/sink/calls", params={"to": number})
        # The first call may be the sign-up's "latest: booked"; the release's own call follows.
        placed = [c for c in answer.json() if c["direction"] == "outbound-api" and c["end_time"]]
        if released := [c for c in placed if "was RELEASED" in c["text"]]:
            break
        assert time.monotonic() < deadline, "no call after the release"
        await asyncio.sleep(0.2)
    [notice] = released
    assert f"{agency} jail" in notice["text"]
    assert "PIN" in notice["text"]  # an urgent notice asks for the PIN chosen on the hotline


async def released_calls(system: SystemDriver, number: str) -> list[dict[str, Any]]:
    answer = await system.http.get(f"{system.stack.url('voice_sink')}/sink/calls", params={"to": number})
    return [c for c in answer.json() if c["direction"] == "outbound-api" and "was RELEASED" in c["text"]]


async def test_a_caller_stops_calls_by_phone_with_the_pin_and_gets_no_call_on_the_next_release(
    system: SystemDriver,
) -> None:
    agency, key, case, digits = await agency_with_case(system, "hotstop")
    number, code = caller(), agency_code(agency)
    await call_hotline(system, number, ["1", code + "#", digits + "#", "1", "4821", "4821"])
    await system.wait_for_matching(agency, reachable_contacts=1)

    stranger = await call_hotline(system, caller(), ["1", code + "#", digits + "#", "8", "4821"])
    wrong = await call_hotline(system, number, ["1", code + "#", digits + "#", "8", "4812"])
    refusal = "That PIN does not stop any calls to this phone about this case."
    assert refusal in stranger["text"]
    assert refusal in wrong["text"]  # a wrong PIN reads exactly like a number that is not registered
    assert stranger["said"] == wrong["said"]

    stopped = await call_hotline(system, number, ["1", code + "#", digits + "#", "8", "4812", "4821"])
    assert f"We will not call this phone again about number {' '.join(digits)} at {agency} jail." in stopped["text"]
    assert stopped["ended_by"] == "hangup"
    await system.wait_for_matching(agency, reachable_contacts=0)

    await system.push(agency, key, [custody_record(f"r-{uuid.uuid4().hex[:6]}", case, "RELEASED_BOND")])
    await asyncio.sleep(5)  # a call would be placed within 2 s of the release
    assert await released_calls(system, number) == []


async def test_a_caller_over_the_rate_limit_is_refused_politely(system: SystemDriver) -> None:
    number = caller()
    answered = 0
    for _ in range(25):  # ten calls an hour; a window may end during the test, so allow for a second one
        call = await call_hotline(system, number, [])
        if "many calls from your phone" in call["text"]:
            break
        assert "For English, press 1." in call["text"]
        answered += 1
    else:
        pytest.fail("the caller was never refused")
    assert answered >= 10
    assert "Esta línea ha recibido muchas llamadas de su teléfono" in call["text"]
    assert "call 911" in call["text"]
    assert call["ended_by"] == "hangup"
    assert call["pressed"] == []


async def test_a_webhook_without_twilios_signature_is_refused(system: SystemDriver) -> None:
    url = f"{system.stack.url('subscription')}/v1/hotline/voice"
    form = {"CallSid": "CA" + uuid.uuid4().hex, "From": caller(), "To": HOTLINE_NUMBER, "Direction": "inbound"}
    unsigned = await system.http.post(url, data=form)
    assert unsigned.status_code == 403
    forged = await system.http.post(url, data=form, headers={"X-Twilio-Signature": twilio_signature("x", url, form)})
    assert forged.status_code == 403
    signed = await system.http.post(
        url,
        data=form,
        headers={"X-Twilio-Signature": twilio_signature(system.stack.secrets["SMS_AUTH_TOKEN"], url, form)},
    )
    assert signed.status_code == 200
    assert signed.headers["content-type"].startswith("application/xml")

    step = f"{system.stack.url('subscription')}/v1/hotline/voice/step?sig=0&s=menu&a=x&c=1"
    signature = twilio_signature(system.stack.secrets["SMS_AUTH_TOKEN"], step, form | {"Digits": "1"})
    tampered = await system.http.post(step, data=form | {"Digits": "1"}, headers={"X-Twilio-Signature": signature})
    assert tampered.status_code == 422  # Twilio signed it, but we never made this state
