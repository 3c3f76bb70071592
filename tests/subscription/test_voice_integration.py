"""Registering a number for calls with a PIN: refused PINs, a landline accepted, the number encrypted and masked,
verified by a call that reads the code, and the PIN's hash (never the PIN) on subscription.state.v1."""

from __future__ import annotations

import asyncpg
import pytest

from shared.events import NotificationKind
from shared.pin import pin_matches
from tests.subscription.conftest import Harness, contact

pytestmark = pytest.mark.integration

LANDLINE = "+13125550142"  # a Chicago landline-style number: callable, not textable
PIN = "4821"


async def test_a_voice_number_with_a_pin_is_verified_by_a_call_and_its_pin_travels_only_hashed(
    harness: Harness, pool: asyncpg.Pool
) -> None:
    created = await harness.subscribe(voice="(312) 555-0142", pin="48 21")
    assert created["status"] == "pending"
    assert contact(created, "voice")["masked"] == "+1••••••••42"
    assert LANDLINE not in str(created)
    assert PIN not in str(created)
    subscription_id = created["subscription_id"]

    [call] = await harness.notices(subscription_id, "voice")
    assert call.kind is NotificationKind.VERIFICATION
    assert harness.cipher.decrypt(call.contact_ciphertext) == LANDLINE
    code = await harness.code(subscription_id, "voice")
    verified = await harness.verify(created, "voice", code)
    assert verified.status_code == 200, verified.text
    assert verified.json()["status"] == "active"

    states = await harness.states(subscription_id, min_version=2)
    voice = next(c for c in states[-1].contacts if c.channel.value == "voice")
    assert voice.verified
    assert voice.pin_hash is not None
    assert PIN not in voice.pin_hash
    assert pin_matches(harness.settings.blind_index_key, subscription_id, PIN, voice.pin_hash)
    stored = await pool.fetchrow(
        "SELECT ciphertext, pin_hash FROM contact_points WHERE subscription_id = $1 AND channel = 'voice'",
        subscription_id,
    )
    assert stored is not None
    assert LANDLINE not in stored["ciphertext"]
    assert stored["pin_hash"] == voice.pin_hash


@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        ({"voice": LANDLINE, "pin": "0000"}, "same digit four times"),
        ({"voice": LANDLINE, "pin": "1234"}, "digits in a row"),
        ({"voice": LANDLINE, "pin": "1212"}, "repeated pair"),
        ({"voice": LANDLINE, "pin": "48"}, "the PIN has 4 digits"),
        ({"voice": LANDLINE}, "choose a 4-digit PIN for voice calls"),
        ({"sms": "+14155552671", "pin": PIN}, "a PIN is only for voice calls"),
        ({"voice": "+1312555", "pin": PIN}, "not valid"),
    ],
)
async def test_a_bad_pin_or_number_is_a_clear_422(harness: Harness, fields: dict[str, str], detail: str) -> None:
    response = await harness.client.post(
        "/v1/subscriptions",
        json={
            "agency_id": "cook-county-jail",
            "identifier": {"kind": "case_number", "value": "CR-2026-0001"},
            "timezone": "America/Chicago",
            **fields,
        },
    )
    assert response.status_code == 422, response.text
    assert detail in str(response.json()["detail"])


async def test_stop_texted_from_the_number_ends_its_calls_too(harness: Harness) -> None:
    mobile = "+14155552671"
    created = await harness.subscribe(sms=mobile, voice=mobile, pin=PIN)
    other = await harness.subscribe(voice="+13125550143", pin=PIN)  # another number: untouched
    stopped = await harness.inbound_sms(mobile, "STOP", "SMstopvoice0001")
    assert stopped.status_code == 200, stopped.text
    view = await harness.manage(created)
    assert contact(view, "sms")["active"] is False
    assert contact(view, "voice")["active"] is False
    states = await harness.states(created["subscription_id"], min_version=2)
    voice = next(c for c in states[-1].contacts if c.channel.value == "voice")
    assert not voice.active
    assert contact(await harness.manage(other), "voice")["active"] is True

    started = await harness.inbound_sms(mobile, "START", "SMstartvoice001")
    assert started.status_code == 200, started.text
    view = await harness.manage(created)
    assert contact(view, "sms")["active"] is True
    assert contact(view, "voice")["active"] is True  # START resumes the calls STOP ended


async def test_start_texted_from_a_number_resumes_calls_to_it_without_an_sms_contact(harness: Harness) -> None:
    mobile = "+14155552672"
    created = await harness.subscribe(voice=mobile, pin=PIN)
    assert (await harness.inbound_sms(mobile, "STOP", "SMstopvoice0002")).status_code == 200
    assert contact(await harness.manage(created), "voice")["active"] is False
    assert (await harness.inbound_sms(mobile, "START", "SMstartvoice002")).status_code == 200
    assert contact(await harness.manage(created), "voice")["active"] is True
