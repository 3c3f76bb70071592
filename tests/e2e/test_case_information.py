"""What victims are told besides a status, through public APIs only: the case information a feed shares appears in
words on a verified subscriber's manage page (English and Spanish) and in no public lookup, never for a sealed
subject; the agency's contacts and referrals appear on the portal and in urgent SMS and email within budget."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from playwright.async_api import expect

from devservers.driver import SystemDriver, Victim, custody_record
from services.delivery.rendering import SMS_SEGMENT_BUDGET, sms_segments
from tests.e2e.browser import chromium
from tests.e2e.test_portal import PHONE, Walk

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

HOTLINE = "+15125550142"
RESOURCES = {
    "contacts": [
        {"role": "hotline", "name": "County victim line", "phone": HOTLINE, "hours": "24/7", "languages": ["en", "es"]},
        {"role": "victim_advocate", "name": "Ana Ruiz", "phone": "+15125550143", "languages": ["es"]},
    ],
    "referrals": [
        {"name": "Casa Segura", "category": "shelter", "phone": "+15125550144", "url": "https://casa.example/"}
    ],
}
CASE_FIELDS = {
    "charges": [{"description": "Aggravated assault", "statute": "PC 22.02", "severity": "felony"}],
    "court_name": "County Court at Law 2",
    "immigration_stage": "in_removal_proceedings",
    "bond_amount": "25000",
    "hold_reason": "Immigration detainer",
    "victim_contact_role": "victim_advocate",
}
SECRET_WORDS = ("Aggravated assault", "PC 22.02", "County Court at Law 2", "Immigration detainer", "25,000.00")


def phone(n: int) -> str:
    return f"+1512556{n:04d}"


async def manage_page(system: SystemDriver, victim: Victim, language: str) -> str:
    answer = await system.http.get(f"{system.stack.url('subscription')}/manage/{victim.manage_token}?lang={language}")
    assert answer.status_code == 200, answer.text
    return answer.text


async def test_case_information_only_for_verified_subscribers_and_resources_in_urgent_notices(
    system: SystemDriver,
) -> None:
    token = uuid.uuid4().hex[:6]
    agency, case, sealed_case = f"case-{token}", f"CR-{token}", f"CS-{token}"
    key = await system.create_agency(agency, victim_services_url="https://help.example/")
    assert (await system.admin("PUT", f"/agencies/{agency}/resources", json=RESOURCES)).status_code == 200
    base = int(token, 16) % 9000
    english = await system.subscribe(agency, case, sms=phone(base), email=f"case-{token}@example.org")
    spanish = await system.subscribe(agency, case, sms=phone(base + 1), language="es")
    unverified = await system.subscribe(agency, case, sms=phone(base + 2))
    sealed = await system.subscribe(agency, sealed_case, sms=phone(base + 3))
    for victim, channel in ((english, "sms"), (english, "email"), (spanish, "sms"), (sealed, "sms")):
        await system.verify(victim, channel)
    await system.wait_for_matching(agency, reachable_contacts=4)

    court_at = datetime.now(UTC) + timedelta(days=20)
    release_at = datetime.now(UTC) + timedelta(days=30)
    dated = CASE_FIELDS | {"next_court_at": court_at.isoformat(), "scheduled_release_at": release_at.isoformat()}
    other = {"person_number": f"P-{sealed_case}", "booking_number": f"B-{sealed_case}"}
    await system.push(
        agency,
        key,
        [
            custody_record(f"r1-{token}", case, "BOOKED", **dated),
            custody_record(f"s1-{token}", sealed_case, "BOOKED", **dated, **other),
        ],
    )
    seal = await system.http.post(
        f"{system.stack.url('ingest')}/v1/agencies/{agency}/sealed-subjects",
        json={"identifiers": [{"kind": "case_number", "value": sealed_case}]},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert seal.status_code == 200, seal.text
    # booking + release scheduled + court date scheduled, after the code
    await system.wait_for("sms", phone(base), lambda m: len(m) >= 4)

    async def shown(victim: Victim, language: str, words: tuple[str, ...]) -> str:
        for _ in range(100):
            page = await manage_page(system, victim, language)
            if all(word in page for word in words):
                return page
            await asyncio.sleep(0.2)
        raise AssertionError(f"{words} never on the manage page")

    page = await shown(english, "en", ("Aggravated assault", "Custody history"))
    for words in (*SECRET_WORDS, "felony", "In removal proceedings", "An immigration judge is deciding", "Ana Ruiz"):
        assert words in page, words
    assert "County victim line" in page
    assert "Casa Segura" in page
    assert "Safe place to stay" in page
    page_es = await shown(spanish, "es", ("Sobre el caso",))
    for words in ("delito grave", "En proceso de deportación", "Un juez de inmigración", "Historial de custodia"):
        assert words in page_es, words
    assert "Línea de ayuda" in page_es

    unverified_page = await manage_page(system, unverified, "en")
    assert "County victim line" in unverified_page  # the agency's help is for anyone
    for words in (*SECRET_WORDS, "Custody history"):
        assert words not in unverified_page, words
    sealed_page = await manage_page(system, sealed, "en")
    for words in (*SECRET_WORDS, "Custody history", "About the case"):
        assert words not in sealed_page, words

    subscription = system.stack.url("subscription")
    lookup = await system.http.get(f"{subscription}/v1/agencies/{agency}/cases/case_number/{case}/status")
    assert lookup.status_code == 200
    for words in (*SECRET_WORDS, "removal", "charges", "bond"):
        assert words not in lookup.text, words

    await system.push(agency, key, [custody_record(f"r2-{token}", case, "RELEASED_BOND")])
    sms = await system.wait_for("sms", phone(base), lambda m: any("was RELEASED" in str(x.get("body")) for x in m))
    release_sms = next(str(m["body"]) for m in sms if "was RELEASED" in str(m.get("body")))
    assert f"Need help now? {HOTLINE}." in release_sms
    assert sms_segments(release_sms) <= SMS_SEGMENT_BUDGET
    sms_es = await system.wait_for(
        "sms", phone(base + 1), lambda m: any("fue LIBERADO" in str(x.get("body")) for x in m)
    )
    release_es = next(str(m["body"]) for m in sms_es if "fue LIBERADO" in str(m.get("body")))
    assert f"¿Ayuda ya? {HOTLINE}." in release_es
    assert sms_segments(release_es) <= SMS_SEGMENT_BUDGET
    emails = await system.wait_for(
        "email", english.email or "", lambda m: any(str(x.get("subject", "")).startswith("URGENT") for x in m)
    )
    urgent = next(m for m in emails if str(m.get("subject", "")).startswith("URGENT"))
    assert f"Need help now? Call {HOTLINE}. More: https://help.example/" in str(
        urgent.get("text") or urgent.get("body")
    )
    announced = [str(m.get("body")) for m in await system.received("sms", phone(base))]
    assert any("is scheduled to be RELEASED" in body for body in announced), announced
    assert any("has a COURT DATE" in body and "County Court at Law 2" in body for body in announced), announced


async def test_bad_resources_are_a_specific_4xx(system: SystemDriver) -> None:
    agency = f"res-{uuid.uuid4().hex[:6]}"
    await system.create_agency(agency)
    bad = {"contacts": [{"role": "sheriff", "name": "X"}]}
    answer = await system.admin("PUT", f"/agencies/{agency}/resources", json=bad)
    assert answer.status_code == 422
    assert "role" in answer.text
    assert isinstance(answer, httpx.Response)


async def test_the_manage_page_with_case_information_passes_axe_in_both_languages(system: SystemDriver) -> None:
    token = uuid.uuid4().hex[:6]
    agency, case = f"axe-{token}", f"CR-{token}"
    key = await system.create_agency(agency)
    assert (await system.admin("PUT", f"/agencies/{agency}/resources", json=RESOURCES)).status_code == 200
    victims = {
        language: await system.subscribe(agency, case, sms=phone(5000 + n + int(token, 16) % 4000), language=language)
        for n, language in enumerate(("en", "es"))
    }
    for victim in victims.values():
        await system.verify(victim, "sms")
    release_at = datetime.now(UTC) + timedelta(days=30)
    fields = CASE_FIELDS | {"scheduled_release_at": release_at.isoformat(), "next_court_at": release_at.isoformat()}
    await system.push(agency, key, [custody_record(f"r1-{token}", case, "BOOKED", **fields)])
    portal = system.stack.url("subscription")
    async with chromium() as browser:
        for language, victim in victims.items():
            context = await browser.new_context(viewport=PHONE)
            page = await context.new_page()
            try:
                for _ in range(100):
                    await page.goto(f"{portal}/manage/{victim.manage_token}?lang={language}")
                    if await page.locator("ol.history li").count():
                        break
                    await asyncio.sleep(0.2)
                await expect(page.locator("html")).to_have_attribute("lang", language)
                await Walk(page, language, audit=True).looked_at("manage-case-information")
            finally:
                await context.close()
