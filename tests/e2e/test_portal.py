"""The victims' portal in Debian's Chromium on the whole running system: the journey from the start page to a
notice and its manage link, in English and Spanish, with JavaScript off, at phone width; axe-core on every page
(the find page's hotline numbers and the page adding a number for calls too); and the link pages' safety (a bare
GET changes nothing; a renewed link retires the old one)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from axe_playwright_python.async_playwright import Axe  # type: ignore[import-untyped]
from playwright.async_api import Browser, Page, ViewportSize, expect

from devservers.driver import CODE, SystemDriver, custody_record
from devservers.stack import HOTLINE_NUMBER
from services.subscription.hotline.domain import agency_code
from tests.e2e.browser import chromium

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "portal"
PHONE: ViewportSize = {"width": 360, "height": 740}
MANAGE_LINK = re.compile(r"https?://\S+/v1/manage/[\w.-]+")
ACK_LINK = re.compile(r"https?://\S+/v1/ack/[\w.-]+")
AXE = Axe()
HOTLINE_SHOWN = "1-800-555-0177"
WCAG_A_AA = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


class Walk:
    """One person's visit: checks each page with axe (when JavaScript runs) and saves a phone-width screenshot."""

    def __init__(self, page: Page, label: str, *, audit: bool) -> None:
        self.page = page
        self.label = label
        self.audit = audit

    async def looked_at(self, name: str) -> None:
        if self.audit:
            results = await AXE.run(self.page, options=WCAG_A_AA)
            assert results.violations_count == 0, f"{name}: {results.generate_report()}"
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            await self.page.screenshot(path=SCREENSHOTS / f"{self.label}-{name}.png", full_page=True)

    async def submit(self, button: str) -> None:
        await self.page.get_by_role("button", name=button, exact=True).click()
        await self.page.wait_for_load_state()


WORDS: dict[str, dict[str, str]] = {
    "en": {
        "start": "Start now",
        "continue": "Continue",
        "released_status": "in custody",
        "register": "Sign up for messages",
        "sign_up": "Sign up",
        "confirm": "Confirm",
        "active": "Your messages are on.",
        "change": "Change language, time zone, changes or quiet hours",
        "save": "Save changes",
        "saved": "Your changes are saved.",
        "cancel": "Cancel my messages",
        "cancel_yes": "Yes, stop all messages",
        "cancelled": "Your messages are cancelled.",
        "wrong": "The code is not right.",
        "missing_agency": "Choose the jail or agency",
        "search": "Search",
        "received": "I received it",
        "choose": "Choose this person",
    },
    "es": {
        "start": "Empezar",
        "continue": "Continuar",
        "released_status": "bajo custodia",
        "register": "Inscribirme para recibir mensajes",
        "sign_up": "Inscribirme",
        "confirm": "Confirmar",
        "active": "Sus mensajes están activos.",
        "change": "Cambiar idioma, zona horaria, cambios u horas de silencio",
        "save": "Guardar los cambios",
        "saved": "Sus cambios se guardaron.",
        "cancel": "Cancelar mis mensajes",
        "cancel_yes": "Sí, detener todos los mensajes",
        "cancelled": "Sus mensajes están cancelados.",
        "wrong": "El código no es correcto.",
        "missing_agency": "Elija la cárcel o agencia",
        "search": "Buscar",
        "received": "Lo recibí",
        "choose": "Elegir a esta persona",
    },
}


async def agency_with_a_case(system: SystemDriver) -> tuple[str, str, str]:
    """A new agency whose feed has booked one person; returns the agency id, its API key and the case number."""
    agency_id = f"portal-{uuid.uuid4().hex[:8]}"
    api_key = await system.create_agency(agency_id, name=f"Portal County Jail {agency_id[-8:]}")
    case = f"CR-{uuid.uuid4().hex[:6].upper()}"
    await system.push(agency_id, api_key, [custody_record(f"{case}-1", case, "BOOKED")])
    async with httpx.AsyncClient(base_url=system.stack.url("subscription")) as client:
        await _eventually(client, "/find", agency_id)
    return agency_id, api_key, case


async def _eventually(client: httpx.AsyncClient, path: str, text: str) -> None:
    """Wait for what another service published to reach the portal (a new agency arrives through Kafka)."""
    for _ in range(300):
        if text in (await client.get(path)).text:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared on {path}")


async def code_for(system: SystemDriver, channel: str, address: str, already: int) -> str:
    messages = await system.wait_for(channel, address, lambda found: len(found) > already)
    body = messages[-1].get("body") or messages[-1].get("text") or ""
    found = CODE.search(body)
    assert found, body
    return found.group(1)


async def journey(browser: Browser, system: SystemDriver, language: str, *, javascript: bool) -> None:
    """Start → find a case → register SMS + email → codes → active → a custody change → its notice → the manage
    link → change quiet hours → cancel."""
    w = WORDS[language]
    label = f"{language}{'' if javascript else '-nojs'}"
    agency_id, api_key, case = await agency_with_a_case(system)
    phone = f"+1512555{uuid.uuid4().int % 10_000:04d}"
    email = f"portal-{uuid.uuid4().hex[:8]}@example.org"
    context = await browser.new_context(java_script_enabled=javascript, viewport=PHONE)
    page = await context.new_page()
    walk = Walk(page, label, audit=javascript)
    portal = system.stack.url("subscription")
    try:
        await page.goto(portal + "/")
        if language == "es":
            await page.get_by_role("link", name="Español").click()
        await expect(page.locator("html")).to_have_attribute("lang", language)
        await walk.looked_at("1-start")
        await page.get_by_role("button", name=w["start"]).click()

        await walk.submit(w["continue"])
        await expect(page.locator(".error-summary")).to_contain_text(w["missing_agency"])
        await walk.looked_at("2-find-errors")
        await page.select_option("#agency_id", agency_id)
        await page.check("#kind")
        await page.fill("#number", case.lower())
        await walk.looked_at("2-find")
        await walk.submit(w["continue"])

        await expect(page.locator("main")).to_contain_text(w["released_status"])
        await walk.looked_at("3-result")
        await page.get_by_role("button", name=w["register"]).click()

        await page.fill("#sms", phone)
        await page.fill("#email", email)
        await walk.looked_at("4-contact")
        await walk.submit(w["continue"])

        await page.check("input[name=quiet][value=off]")
        await walk.looked_at("5-options")
        await walk.submit(w["continue"])

        await expect(page.locator("dl.summary")).to_contain_text(email)
        await walk.looked_at("6-check")
        await walk.submit(w["sign_up"])

        sms_code = await code_for(system, "sms", phone, 0)
        await page.fill("#code", f"{(int(sms_code) + 1) % 1_000_000:06d}")
        await walk.submit(w["confirm"])
        await expect(page.locator(".error-summary")).to_contain_text(w["wrong"])
        await walk.looked_at("7-code-error")
        await page.fill("#code", sms_code)
        await walk.submit(w["confirm"])
        email_code = await code_for(system, "email", email, 0)
        await walk.looked_at("7-code")
        await page.fill("#code", email_code)
        await walk.submit(w["confirm"])
        await expect(page.locator(".panel")).to_contain_text(w["active"])
        await walk.looked_at("8-manage")

        await system.wait_for_matching(agency_id, reachable_contacts=2)
        before = len(await system.received("email", email))
        await system.push(agency_id, api_key, [custody_record(f"{case}-2", case, "RELEASED")])
        texts = await system.wait_for("sms", phone, lambda found: any(ACK_LINK.search(m["body"]) for m in found))
        ack = next(found for m in texts if (found := ACK_LINK.search(m["body"])))
        await page.goto(ack.group(0).rstrip("."))
        await expect(page.locator("html")).to_have_attribute("lang", language)
        await walk.looked_at("12-acknowledge")
        await walk.submit(w["received"])
        await walk.looked_at("13-acknowledged")
        emails = await system.wait_for("email", email, lambda found: len(found) > before)
        notice = next(m["text"] for m in emails[before:] if case in m["text"])
        link = MANAGE_LINK.search(notice)
        assert link, notice

        await page.goto(link.group(0).rstrip("."))
        await expect(page).to_have_url(re.compile(r"/manage/[^/]+$"))
        await expect(page.locator("html")).to_have_attribute("lang", language)
        await page.get_by_role("button", name=w["change"]).click()
        await page.check("input[name=quiet][value=on]")
        await page.fill("#quiet_start", "22:30")
        await page.fill("#quiet_end", "06:15")
        await walk.looked_at("9-settings")
        announced = len(await system.received("email", email))
        await walk.submit(w["save"])
        await expect(page.locator(".panel")).to_contain_text(w["saved"])
        await expect(page.locator("dl.summary")).to_contain_text("22:30")
        await system.wait_for("email", email, lambda found: len(found) > announced)

        await page.get_by_role("button", name=w["cancel"]).click()
        await walk.looked_at("10-cancel")
        await walk.submit(w["cancel_yes"])
        await expect(page.locator(".panel")).to_contain_text(w["cancelled"])
        await walk.looked_at("11-cancelled")
    finally:
        await context.close()


async def test_journey_in_english_at_phone_width(browser: Browser, system: SystemDriver) -> None:
    await journey(browser, system, "en", javascript=True)


async def test_journey_in_spanish_at_phone_width(browser: Browser, system: SystemDriver) -> None:
    await journey(browser, system, "es", javascript=True)


async def test_journey_with_javascript_off(browser: Browser, system: SystemDriver) -> None:
    await journey(browser, system, "en", javascript=False)


@pytest.mark.parametrize("language", ["en", "es"])
async def test_link_and_problem_pages_pass_axe(browser: Browser, system: SystemDriver, language: str) -> None:
    context = await browser.new_context(viewport=PHONE)
    page = await context.new_page()
    walk = Walk(page, language, audit=True)
    portal = system.stack.url("subscription")
    try:
        for name, path in (
            ("verify-link", "/v1/verify?token=anything"),
            ("problem-link", "/manage/not-a-token"),
            ("link-sent", "/link-sent"),
            ("not-found", "/no-such-page"),
            ("wrong-method", "/find/name/choose"),
            ("ack-problem", None),
        ):
            url = f"{system.stack.url('delivery')}/v1/ack/forged" if path is None else portal + path
            await page.goto(f"{url}{'&' if '?' in url else '?'}lang={language}")
            await expect(page.locator("html")).to_have_attribute("lang", language)
            await walk.looked_at(name)
    finally:
        await context.close()


@pytest.mark.parametrize("language", ["en", "es"])
async def test_the_hotline_numbers_and_adding_a_number_for_calls_pass_axe_and_work_without_javascript(
    browser: Browser, system: SystemDriver, language: str
) -> None:
    agency_id, _, case = await agency_with_a_case(system)
    email = f"calls-{uuid.uuid4().hex[:8]}@example.org"
    victim = await system.subscribe(agency_id, case, email=email, language=language)
    await system.verify(victim, "email")
    portal = system.stack.url("subscription")
    add_voice = f"{portal}/manage/{victim.manage_token}/contacts/voice?lang={language}"
    for javascript in (True, False):  # axe needs JavaScript; the pages must work without it
        context = await browser.new_context(java_script_enabled=javascript, viewport=PHONE)
        page = await context.new_page()
        walk = Walk(page, f"{language}{'' if javascript else '-nojs'}", audit=javascript)
        try:
            await page.goto(f"{portal}/find?lang={language}")
            hotline = page.get_by_role("link", name=HOTLINE_SHOWN)
            await expect(hotline).to_have_attribute("href", f"tel:{HOTLINE_NUMBER}")
            row = page.get_by_role("row").filter(has_text=f"Portal County Jail {agency_id[-8:]}")
            await expect(row).to_contain_text(agency_code(agency_id))
            await walk.looked_at("find-hotline")

            await page.goto(add_voice)
            await expect(page.locator("html")).to_have_attribute("lang", language)
            await walk.looked_at("add-voice")
            await page.fill("#value", "+15125550142")
            await page.fill("#pin", "1234")
            await walk.submit(WORDS[language]["continue"])
            await expect(page.locator(".error-summary")).to_be_visible()
            await expect(page.locator("#pin")).to_have_value("")  # a PIN is never shown back
            await walk.looked_at("add-voice-errors")
            if not javascript:
                await page.fill("#pin", "4821")
                await walk.submit(WORDS[language]["continue"])
                await expect(page).to_have_url(re.compile(r"/manage/[^/]+/code/voice"))
        finally:
            await context.close()


async def test_keyboard_alone_reaches_every_control(browser: Browser, system: SystemDriver) -> None:
    agency_id, _, case = await agency_with_a_case(system)
    context = await browser.new_context(viewport=PHONE)
    page = await context.new_page()
    try:
        await page.goto(system.stack.url("subscription") + "/?lang=en")
        await page.keyboard.press("Tab")
        await expect(page.locator(".skip")).to_be_focused()
        for _ in range(3):  # the service's name, the language switch, then "Start now"
            await page.keyboard.press("Tab")
        await expect(page.get_by_role("button", name="Start now")).to_be_focused()
        await page.keyboard.press("Enter")
        await expect(page).to_have_url(re.compile(r"/find$"))
        await page.keyboard.press("Tab")
        await page.keyboard.press("Tab")
        await page.keyboard.press("Tab")
        await page.keyboard.press("Tab")
        await expect(page.locator("#agency_id")).to_be_focused()
        await page.locator("#agency_id").select_option(agency_id)  # a select opens with the keyboard natively
        await page.keyboard.press("Tab")
        await expect(page.locator("#kind")).to_be_focused()
        await page.keyboard.press("Space")
        await page.keyboard.press("Tab")
        await expect(page.locator("#number")).to_be_focused()
        await page.keyboard.type(case)
        await page.keyboard.press("Enter")
        await expect(page).to_have_url(re.compile(r"/find/result$"))
        await expect(page.locator("main")).to_contain_text(case)
    finally:
        await context.close()


@pytest.mark.parametrize("language", ["en", "es"])
async def test_name_search_where_the_agency_allows_it(browser: Browser, system: SystemDriver, language: str) -> None:
    agency_id = f"names-{uuid.uuid4().hex[:8]}"
    api_key = await system.create_agency(agency_id, name=f"Name Search Jail {agency_id[-8:]}", public_name_search=True)
    last_name = f"Ruiz{uuid.uuid4().hex[:6]}"
    case = f"CR-{uuid.uuid4().hex[:6].upper()}"
    await system.push(agency_id, api_key, [custody_record(f"{case}-1", case, "BOOKED", name=f"Ana {last_name}")])
    portal = system.stack.url("subscription")
    context = await browser.new_context(viewport=PHONE)
    page = await context.new_page()
    walk = Walk(page, language, audit=True)
    try:
        for _ in range(300):  # the agency and the booking reach the portal through Kafka
            await page.goto(f"{portal}/find/name?lang={language}")
            if await page.locator(f"option[value='{agency_id}']").count():
                break
            await asyncio.sleep(0.1)
        await walk.submit(WORDS[language]["search"])
        await expect(page.locator(".error-summary")).to_be_visible()
        await walk.looked_at("name-errors")
        await page.select_option("#agency_id", agency_id)
        await page.fill("#last_name", last_name.upper())
        await page.fill("#first_name", "ana")
        await walk.submit(WORDS[language]["search"])
        await expect(page.locator("main")).to_contain_text(f"Ana {last_name}")
        await walk.looked_at("name-results")
        await page.get_by_role("button", name=re.compile(WORDS[language]["choose"])).click()
        await expect(page.locator("#sms")).to_be_visible()
    finally:
        await context.close()


class Visitor:
    """A browser without a browser: keeps cookies and posts the forms of the pages it reads."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def post_form(self, page_url: str, action: str, **fields: str) -> httpx.Response:
        page = await self.client.get(page_url, headers={"Accept": "text/html"})
        assert page.status_code == 200, page.text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token, page.text
        return await self.client.post(action, data={"csrf_token": token.group(1), **fields})


async def test_link_pages_change_nothing_and_a_renewed_link_retires_the_old_one(system: SystemDriver) -> None:
    agency_id, api_key, case = await agency_with_a_case(system)
    phone = f"+1512556{uuid.uuid4().int % 10_000:04d}"
    email = f"links-{uuid.uuid4().hex[:8]}@example.org"
    victim = await system.subscribe(agency_id, case, sms=phone, email=email)
    await system.verify(victim, "sms")
    portal = system.stack.url("subscription")
    async with httpx.AsyncClient(base_url=portal, timeout=30, follow_redirects=True) as client:
        visitor = Visitor(client)

        async def manage_json(token: str) -> httpx.Response:
            return await client.get(f"/v1/manage/{token}", headers={"Accept": "application/json"})

        verification = (await system.wait_for("email", email, lambda found: len(found) > 0))[0]
        verify_link = re.search(r"https?://\S+/v1/verify\?token=[\w.-]+", verification["text"])
        assert verify_link, verification["text"]
        prefetched = await client.get(verify_link.group(0))
        assert prefetched.status_code == 200
        email_contact = next(
            c for c in (await manage_json(victim.manage_token)).json()["contacts"] if c["channel"] == "email"
        )
        assert email_contact["verified"] is False, "a bare GET of the verify link verified the address"
        token = verify_link.group(0).split("token=", 1)[1]
        verified = await visitor.post_form(verify_link.group(0), "/v1/verify", token=token)
        assert verified.status_code == 200, verified.text
        assert all(c["verified"] for c in (await manage_json(victim.manage_token)).json()["contacts"])

        await system.wait_for_matching(agency_id, reachable_contacts=2)
        await system.push(agency_id, api_key, [custody_record(f"{case}-2", case, "RELEASED")])
        urgent = await system.wait_for("sms", phone, lambda found: any("/v1/ack/" in m["body"] for m in found))
        ack_link = next(re.search(r"https?://\S+/v1/ack/[\w.-]+", m["body"]) for m in urgent if "/v1/ack/" in m["body"])
        assert ack_link
        assert (await client.get(ack_link.group(0).rstrip("."))).status_code == 200
        operator = {"Authorization": f"Bearer {system.stack.secrets['OPERATOR_TOKEN']}"}
        delivery = system.stack.url("delivery")
        listed = await client.get(
            f"{delivery}/v1/notifications", params={"subscription_id": victim.subscription_id}, headers=operator
        )
        assert listed.status_code == 200, listed.text
        notices = listed.json()["notifications"]
        urgent_ones = [n for n in notices if n["kind"] == "status_change"]
        assert urgent_ones
        assert all(n["acknowledged_at"] is None for n in urgent_ones), "a bare GET of the ack link acknowledged"

        old = victim.manage_token
        changed = await visitor.post_form(
            f"/manage/{old}/settings",
            f"/manage/{old}/settings",
            language="en",
            timezone="America/Chicago",
            quiet="off",
            event_types="released",
        )
        assert changed.status_code == 200, changed.text
        assert "Your changes are saved" in changed.text
        await system.wait_for("sms", phone, lambda found: any("settings were changed" in m["body"] for m in found))

        renewed = await visitor.post_form(f"/manage/{old}", f"/manage/{old}/new-link")
        assert renewed.status_code == 200
        assert "/manage/" not in str(renewed.url), "the new link must not be shown to whoever holds the old one"
        assert (await manage_json(old)).status_code == 404
        assert (await client.get(f"/manage/{old}")).status_code == 404
        fresh = await system.wait_for(
            "sms", phone, lambda found: any("here is your new link" in m["body"] for m in found)
        )
        new_link = MANAGE_LINK.search(next(m["body"] for m in fresh if "here is your new link" in m["body"]))
        assert new_link
        new_url = new_link.group(0).rstrip(".")
        assert (await client.get(new_url, headers={"Accept": "application/json"})).status_code == 200
