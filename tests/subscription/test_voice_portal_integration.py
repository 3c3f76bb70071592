"""Registering a number for calls on the portal with forms alone: the PIN checked with a clear message, the code
read by a call entered on the code page, and the manage page showing the calls in the victim's language."""

from __future__ import annotations

import re

import pytest

from shared.events import NotificationKind
from shared.pin import pin_matches
from tests.subscription.conftest import AGENCY_ID, Harness, contact, manage_token
from tests.subscription.test_portal_integration import csrf_token, post_form

pytestmark = pytest.mark.integration

LANDLINE = "+13125550144"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"voice": LANDLINE, "pin": "1234"}, "Choose a PIN that is hard to guess"),
        ({"voice": LANDLINE, "pin": ""}, "Choose a 4-digit PIN for the calls"),
        ({"voice": "12", "pin": "4821"}, "Enter a phone number we can call"),
        ({"email": "victim@example.org", "pin": "4821"}, "A PIN is only for calls"),
    ],
)
async def test_a_weak_or_missing_pin_is_refused_with_a_clear_message(
    harness: Harness, fields: dict[str, str], message: str
) -> None:
    client = harness.client
    await post_form(client, "/find", "/find", agency_id=AGENCY_ID, kind="case_number", number="CR-2026-0001")
    refused = await post_form(client, "/register/contact", "/register/contact", **({"sms": "", "email": ""} | fields))
    assert refused.status_code == 422
    assert message in refused.text
    assert "4821" not in refused.text  # a PIN is never shown back


async def test_registering_a_number_for_calls_with_forms_alone(harness: Harness) -> None:
    client = harness.client
    await post_form(client, "/find", "/find", agency_id=AGENCY_ID, kind="case_number", number="CR-2026-0001")
    contacts = await post_form(
        client, "/register/contact", "/register/contact", sms="", email="", voice="(312) 555-0144", pin="4821"
    )
    assert contacts.headers["location"] == "/register/options"
    chosen = await client.post(
        "/register/options",
        data={
            "csrf_token": await csrf_token(client, "/register/options"),
            "language": "es",
            "timezone": "America/Chicago",
            "event_types": ["released"],
            "quiet": "on",
            "quiet_start": "22:00",
            "quiet_end": "06:00",
        },
    )
    assert chosen.headers.get("location") == "/register/check", chosen.text
    check = await client.get("/register/check")
    assert "Phone calls" in check.text  # the pages in the browser's language; the notices in Spanish
    assert "4821" not in check.text
    created = await post_form(client, "/register/check", "/register/check")
    code_page = created.headers["location"]
    assert re.fullmatch(r"/manage/[^/]+/code/voice", code_page)
    assert "Llamamos y leímos un código de 6 cifras" in (await client.get(code_page)).text
    token = code_page.split("/")[2]
    view = (await client.get(f"/v1/manage/{token}", headers={"Accept": "application/json"})).json()
    code = await harness.code(view["subscription_id"], "voice")
    right = await post_form(client, code_page, code_page, code=code)
    assert right.status_code == 303
    manage = await client.get(f"/manage/{token}")
    assert manage.status_code == 200
    assert "Llamadas" in manage.text
    assert manage.text.count("confirmado") == 1
    assert "+1••••••••44" in manage.text
    assert LANDLINE not in manage.text


async def test_a_number_for_calls_added_later_on_the_manage_page_with_its_pin_is_verified_by_a_call(
    harness: Harness,
) -> None:
    created = await harness.subscribe(email="later@example.org")
    assert (
        await harness.verify(created, "email", await harness.code(created["subscription_id"], "email"))
    ).status_code == 200
    token = manage_token(created)
    page = f"/manage/{token}/contacts/voice"
    assert "Add a phone number for calls" in (await harness.client.get(f"/manage/{token}")).text
    weak = await post_form(harness.client, page, page, value=LANDLINE, pin="7777")
    assert weak.status_code == 422
    assert "Choose a PIN that is hard to guess" in weak.text
    assert "7777" not in weak.text  # a PIN is never shown back
    added = await post_form(harness.client, page, page, value=LANDLINE, pin="48 21")
    assert added.headers["location"] == f"/manage/{token}/code/voice"
    [call] = [
        n for n in await harness.notices(created["subscription_id"], "voice") if n.kind is NotificationKind.VERIFICATION
    ]
    assert harness.cipher.decrypt(call.contact_ciphertext) == LANDLINE
    code = await harness.code(created["subscription_id"], "voice")
    assert (await harness.verify(created, "voice", code)).status_code == 200
    states = await harness.states(created["subscription_id"], min_version=4)
    voice = next(c for c in states[-1].contacts if c.channel.value == "voice")
    assert voice.verified
    assert voice.pin_hash is not None
    assert pin_matches(harness.settings.blind_index_key, created["subscription_id"], "4821", voice.pin_hash)


async def test_the_verified_sms_number_added_for_calls_needs_no_call(harness: Harness) -> None:
    mobile = "+14155552673"
    created = await harness.subscribe(sms=mobile)
    assert (
        await harness.verify(created, "sms", await harness.code(created["subscription_id"], "sms"))
    ).status_code == 200
    token = manage_token(created)
    page = f"/manage/{token}/contacts/voice"
    added = await post_form(harness.client, page, page, value="415 555 2673", pin="4821")
    assert added.headers["location"] == f"/manage/{token}?done=verified"
    view = await harness.manage(created)
    assert contact(view, "voice")["verified"] is True
    states = await harness.states(created["subscription_id"], min_version=3)
    assert next(c for c in states[-1].contacts if c.channel.value == "voice").verified


async def test_registering_the_same_number_for_texts_and_calls_sends_one_code_by_sms(harness: Harness) -> None:
    mobile = "+14155552674"
    created = await harness.subscribe(sms=mobile, voice=mobile, pin="4821")
    code = await harness.code(created["subscription_id"], "sms")
    assert (await harness.verify(created, "voice", code)).status_code == 200  # the SMS code, entered for the calls
    view = await harness.manage(created)
    assert contact(view, "sms")["verified"] is True
    assert contact(view, "voice")["verified"] is True
    notices = await harness.notices(created["subscription_id"], "sms")
    assert [n.kind for n in notices] == [NotificationKind.VERIFICATION]
    assert (
        await harness.pool.fetchval(
            "SELECT count(*) FROM verification_codes WHERE subscription_id = $1", created["subscription_id"]
        )
        == 1
    )
