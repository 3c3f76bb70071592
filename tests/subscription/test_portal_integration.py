"""The portal in-process on real Kafka and PostgreSQL: registering with forms alone (no JavaScript), CSRF,
content negotiation, the hotline's numbers on the find page, and the manage page's changes, each announced on the
verified contacts."""

from __future__ import annotations

import re
from typing import Any

import asyncpg
import httpx
import pytest

from services.subscription.hotline.domain import agency_code
from services.subscription.settings import SubscriptionSettings
from shared.events import NotificationKind, SubscriptionChange
from tests.subscription.conftest import AGENCY_ID, Harness, contact, manage_token, started

pytestmark = pytest.mark.integration

PHONE = "+14155552671"
EMAIL = "portal.victim@example.org"
HTML = {"Accept": "text/html"}


async def csrf_token(client: httpx.AsyncClient, page: str) -> str:
    answer = await client.get(page, headers=HTML)
    assert answer.status_code == 200, answer.text
    found = re.search(r'name="csrf_token" value="([^"]+)"', answer.text)
    assert found, answer.text
    return found.group(1)


async def post_form(client: httpx.AsyncClient, page: str, action: str, **fields: Any) -> httpx.Response:
    return await client.post(action, data={"csrf_token": await csrf_token(client, page), **fields})


async def changes(harness: Harness, subscription_id: str, channel: str, count: int) -> list[SubscriptionChange]:
    notices = await harness.notices(subscription_id, channel, count)
    return [n.change for n in notices if n.kind is NotificationKind.SUBSCRIPTION_CHANGED and n.change is not None]


async def test_registering_with_forms_alone(harness: Harness) -> None:
    client = harness.client
    found = await post_form(client, "/find", "/find", agency_id=AGENCY_ID, kind="case_number", number="cr-2026-0001")
    assert found.status_code == 303
    assert found.headers["location"] == "/find/result"
    result = await client.get("/find/result")
    assert "We cannot show a status for this number" in result.text, "an unknown case reads like a sealed one"

    refused = await post_form(client, "/register/contact", "/register/contact", sms="12", email="")
    assert refused.status_code == 422
    assert '<a href="#sms">' in refused.text
    contacts = await post_form(client, "/register/contact", "/register/contact", sms=PHONE, email=EMAIL)
    assert contacts.headers["location"] == "/register/options"
    options = await client.get("/register/options")
    assert 'value="America/Chicago" selected' in options.text, "the agency's time zone is the default"
    chosen = await client.post(
        "/register/options",
        data={
            "csrf_token": await csrf_token(client, "/register/options"),
            "language": "es",
            "timezone": "America/Chicago",
            "event_types": ["released", "escaped"],
            "quiet": "on",
            "quiet_start": "22:00",
            "quiet_end": "06:00",
        },
    )
    assert chosen.headers["location"] == "/register/check"
    check = await client.get("/register/check")
    assert EMAIL in check.text
    assert "22:00" in check.text
    created = await post_form(client, "/register/check", "/register/check")
    assert created.status_code == 303
    code_page = created.headers["location"]
    assert re.fullmatch(r"/manage/[^/]+/code/sms", code_page)
    token = code_page.split("/")[2]

    view = (await client.get(f"/v1/manage/{token}", headers={"Accept": "application/json"})).json()
    assert view["language"] == "es"
    assert view["event_types"] == ["released", "escaped"]
    assert view["quiet_hours"] == {"start": "22:00:00", "end": "06:00:00"}
    assert view["identifier"] == {"kind": "case_number", "value": "CR-2026-0001"}
    code = await harness.code(view["subscription_id"], "sms")
    wrong = await post_form(client, code_page, code_page, code=f"{(int(code) + 1) % 1_000_000:06d}")
    assert wrong.status_code == 422
    assert "#code" in wrong.text
    right = await post_form(client, code_page, code_page, code=code)
    assert right.headers["location"] == f"/manage/{token}/code/email"
    assert (await client.get(f"/manage/{token}")).text.count("confirmado") == 1


async def test_every_post_needs_this_browsers_csrf_token(harness: Harness) -> None:
    cookie = (await harness.client.get("/find", headers=HTML)).headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "secure" in cookie, "served over https: the CSRF cookie never travels in clear"
    assert "samesite=lax" in cookie
    harness.client.cookies.clear()
    fields = {"agency_id": AGENCY_ID, "kind": "case_number", "number": "CR-1"}
    assert (await harness.client.post("/find", data=fields)).status_code == 403
    assert (await harness.client.post("/find", data={**fields, "csrf_token": "forged"})).status_code == 403
    token = await csrf_token(harness.client, "/find")
    harness.client.cookies.clear()
    stolen = await harness.client.post("/find", data={**fields, "csrf_token": token})
    assert stolen.status_code == 403, "a token is good only with the cookie it was made for"
    assert "This page was open too long" in stolen.text


async def test_a_browser_gets_error_pages_in_its_language_and_programs_json(harness: Harness) -> None:
    missing = await harness.client.get("/no-such-page?lang=es", headers=HTML)
    assert missing.status_code == 404
    assert '<html lang="es">' in missing.text
    assert "No encontramos la página" in missing.text
    bad = await harness.client.get("/find/name/choose", headers=HTML)
    assert bad.status_code == 405
    assert "<h1>" in bad.text
    assert (await harness.client.get("/no-such-page")).json() == {"detail": "Not Found"}
    assert (await harness.client.get("/v1/no-such-page", headers=HTML)).json() == {"detail": "Not Found"}


async def test_manage_link_opens_the_page_in_a_browser_and_json_for_programs(harness: Harness) -> None:
    created = await harness.subscribe(sms=PHONE, language="es")
    token = manage_token(created)
    browser = await harness.client.get(
        f"/v1/manage/{token}", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    )
    assert browser.status_code == 303
    assert browser.headers["location"] == f"/manage/{token}"
    page = await harness.client.get(f"/manage/{token}")
    assert '<html lang="es">' in page.text
    assert "+1••••••••71" in page.text
    assert PHONE not in page.text
    assert (await harness.client.get(f"/v1/manage/{token}")).json()["subscription_id"] == created["subscription_id"]
    assert (await harness.client.get("/manage/forged", headers=HTML)).status_code == 404


async def test_contact_changes_are_verified_first_and_announced(harness: Harness) -> None:
    created = await harness.subscribe(sms=PHONE)
    subscription_id, token = created["subscription_id"], manage_token(created)
    assert (await harness.verify(created, "sms", await harness.code(subscription_id, "sms"))).status_code == 200
    base = f"/manage/{token}"

    only = await post_form(harness.client, base, f"{base}/contacts/sms/remove")
    assert only.status_code == 409, "the only working contact cannot be removed"
    assert "This is your only working contact" in only.text

    added = await post_form(harness.client, f"{base}/contacts/email", f"{base}/contacts/email", value=EMAIL)
    assert added.headers["location"] == f"{base}/code/email"
    view = await harness.manage(created)
    assert contact(view, "email")["verified"] is False
    email_notices = await harness.notices(subscription_id, "email")
    assert [n.kind for n in email_notices] == [NotificationKind.VERIFICATION], "unverified: a code and nothing else"
    assert await changes(harness, subscription_id, "sms", 2) == [SubscriptionChange.CONTACT_ADDED]

    removed = await post_form(harness.client, base, f"{base}/contacts/email/remove")
    assert removed.headers["location"] == f"{base}?done=contact_removed"
    assert [c["channel"] for c in (await harness.manage(created))["contacts"]] == ["sms"]

    cancelled = await harness.client.delete(f"/v1/manage/{token}")
    assert cancelled.json()["status"] == "cancelled"
    too_late = await post_form(
        harness.client,
        f"{base}/settings",
        f"{base}/settings",
        language="en",
        timezone="UTC",
        quiet="off",
        event_types="released",
    )
    assert too_late.status_code == 409
    assert "These messages are cancelled" in too_late.text
    # Notices are keyed by notification id and spread over partitions: compare without order.
    announced = await changes(harness, subscription_id, "sms", 4)
    assert sorted(announced) == sorted(
        [SubscriptionChange.CONTACT_ADDED, SubscriptionChange.CONTACT_REMOVED, SubscriptionChange.CANCELLED]
    )


async def test_a_new_link_retires_the_old_one_and_goes_to_the_verified_contacts_only(harness: Harness) -> None:
    created = await harness.subscribe(sms=PHONE, email=EMAIL)
    subscription_id, old = created["subscription_id"], manage_token(created)
    assert (await harness.verify(created, "sms", await harness.code(subscription_id, "sms"))).status_code == 200
    renewed = await post_form(harness.client, f"/manage/{old}", f"/manage/{old}/new-link")
    assert renewed.headers["location"] == "/link-sent"
    assert (await harness.client.get(f"/v1/manage/{old}")).status_code == 404
    sms_notices = await harness.notices(subscription_id, "sms", 2)
    link_notice = next(n for n in sms_notices if n.change is SubscriptionChange.NEW_LINK)
    assert link_notice.manage_url_ciphertext is not None
    new_url = harness.cipher.decrypt(link_notice.manage_url_ciphertext)
    assert new_url != created["manage_url"]
    assert (await harness.client.get(new_url.removeprefix(harness.settings.public_base_url))).status_code == 200
    email_kinds = [n.kind for n in await harness.notices(subscription_id, "email")]
    assert NotificationKind.SUBSCRIPTION_CHANGED not in email_kinds, "the unverified email is told nothing"


async def test_the_find_page_tells_how_to_find_the_case_by_phone_in_both_languages(
    subscription_settings: SubscriptionSettings, pool: asyncpg.Pool
) -> None:
    code = agency_code(AGENCY_ID)
    async with started(subscription_settings, pool) as harness:
        assert "tel:" not in (await harness.client.get("/find", headers=HTML)).text  # no hotline number configured
    with_hotline = subscription_settings.model_copy(update={"hotline_number": "+18005550177"})
    async with started(with_hotline, pool) as harness:
        english = (await harness.client.get("/find", headers=HTML)).text
        spanish = (await harness.client.get("/find?lang=es", headers=HTML)).text
    assert '<a href="tel:+18005550177">1-800-555-0177</a> and enter the number of the jail or agency' in english
    assert f"<tr><td>Cook County Jail</td><td>{code}</td></tr>" in english
    assert 'Llame al <a href="tel:+18005550177">1-800-555-0177</a> y marque el número' in spanish
    assert "Número que debe marcar" in spanish
