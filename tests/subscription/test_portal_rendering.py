"""Unit tests of the portal's pages, words and forms: every page renders in both languages, a Spanish page holds
no English sentence, forms say what is wrong in words' keys that exist."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, time
from typing import Any

import pytest

from services.delivery.rendering import NoticeLinks, render_email, render_sms
from services.subscription.domain.names import name_words
from services.subscription.domain.subscription import ALL_EVENT_TYPES
from services.subscription.portal.find import dialled
from services.subscription.portal.forms import ContactForm, Draft, FieldError, FindForm, NameForm, OptionsForm
from services.subscription.rendering import TEMPLATE_DIRECTORY, default_renderer
from shared.events import NotificationKind, NotificationRequested, SubscriptionChange
from shared.vocabulary import Channel, Language, Urgency

RENDERER = default_renderer()
OPTIONS = OptionsForm.of(Language.ENGLISH, "America/Chicago", ALL_EVENT_TYPES, (time(21, 0), time(7, 0)))
SUMMARY: dict[str, Any] = {
    "agency_name": "Cook County Jail",
    "kind": "case_number",
    "number": "CR-2026-0001",
    "contacts": [
        {"channel": "sms", "shown": "+1••••••••23", "state": "confirmed"},
        {"channel": "email", "shown": "n•••@example.org", "state": "waiting"},
    ],
    "language": "es",
    "timezone_name": "Central",
    "event_types": ["released", "escaped"],
    "all_events": False,
    "quiet_start": "21:00",
    "quiet_end": "07:00",
    "change": True,
}
OPTION_CONTEXT: dict[str, Any] = {
    "form": OPTIONS,
    "timezones": [("America/Chicago", "Central")],
    "event_options": [(str(status), str(status).upper(), None) for status in ALL_EVENT_TYPES],
}
ERROR = [FieldError(field="number", key="number.missing")]
NAME_ERRORS = [FieldError(field="last_name", key="last_name.missing")]
RESOURCES: dict[str, Any] = {
    "contacts": [
        {
            "role": "hotline",
            "name": "Victim line",
            "phone": "+15125550100",
            "email": None,
            "hours": "24/7",
            "languages": ["en", "es"],
        }
    ],
    "referrals": [
        {
            "name": "Safe House",
            "category": "shelter",
            "phone": None,
            "url": "https://safe.example/",
            "languages": [],
            "hours": None,
            "description": "Beds tonight",
        }
    ],
}
CASE_CONTEXT = {
    "case": {
        "charges": [{"description": "Assault", "statute": "PC 1", "severity": "felony"}],
        "next_court_at": "2026-12-03 09:00 CST",
        "court_name": "Court 2",
        "scheduled_release_at": "2026-12-20 15:00 CST",
        "immigration_stage": "final_order_of_removal",
        "bond_amount": "5,000.00",
        "hold_reason": "Immigration detainer",
        "victim_contact_role": "hotline",
    },
    "history": [{"status": "in_custody", "facility": "Main Jail", "at": "2026-11-27 14:05 CST"}],
    "assigned": RESOURCES["contacts"][0],
    "resources": RESOURCES,
}
PAGES: dict[str, dict[str, Any]] = {
    "start": {},
    "find": {
        "form": FindForm(),
        "agencies": [("cook", "Cook County Jail")],
        "errors": ERROR,
        "name_search": True,
        "hotline_number": dialled("+18005550177"),
        "hotline_codes": [("Cook County Jail", "48217")],
    },
    "find_result": {
        "agency_name": "Cook County Jail",
        "kind": "booking_number",
        "number": "B-1",
        "status": "released",
        "facility": "Main Jail",
        "since": "2026-11-27 14:05 CST",
        "resources": RESOURCES,
    },
    "find_name": {"form": NameForm(), "agencies": [("cook", "Cook County Jail")], "errors": NAME_ERRORS},
    "find_name_results": {
        "people": [
            {
                "display_name": "Ana Ruiz",
                "status": "in_custody",
                "facility": None,
                "kind": "booking_number",
                "number": "B1",
            }
        ],
        "full": True,
    },
    "register_contact": {"form": ContactForm(), "errors": [FieldError(field="sms", key="sms.invalid")]},
    "register_options": {**OPTION_CONTEXT, "errors": [FieldError(field="quiet_end", key="quiet_end.same")]},
    "register_check": {"summary": SUMMARY},
    "code": {
        "channel": "sms",
        "masked": "+1••••••••23",
        "action": "/manage/t/code/sms",
        "form": {"code": ""},
        "sent": True,
        "errors": [FieldError(field="code", key="code.wrong")],
    },
    "manage": {
        "done": "changed",
        "status": "active",
        "base": "/manage/t",
        "summary": {**SUMMARY, "change": False},
        "addable": ["email"],
        "removable": ["sms"],
        **CASE_CONTEXT,
    },
    "settings": {**OPTION_CONTEXT, "base": "/manage/t"},
    "add_contact": {"base": "/manage/t", "channel": "email", "form": {"value": ""}},
    "cancel": {"base": "/manage/t"},
}
MESSAGES = [
    "link_sent",
    "verify",
    "verified",
    "unsubscribe",
    "unsubscribed",
    *(
        f"problem.{key}"
        for key in ("link", "expired", "used", "cancelled", "too_many", "expired_form", "not_found", "agency")
    ),
]


def rendered_pages(language: Language) -> dict[str, str]:
    pages = {name: RENDERER.page(name, language, **context) for name, context in PAGES.items()}
    words = RENDERER.words(language)
    for page in MESSAGES:
        action = "/v1/verify" if f"{page}.button" in words else None
        context = {"page": page, "action": action, "hidden": [("token", "t")], "home": True}
        pages[page] = RENDERER.page("message", language, **context)
    return pages


def english_sentences() -> set[str]:
    """English words of the portal that Spanish writes differently (names like "Custody Watch" are the same)."""
    english, spanish = RENDERER.words(Language.ENGLISH), RENDERER.words(Language.SPANISH)
    return {text for key, text in english.items() if text != spanish[key] and len(text) >= 8}


def visible_text(document: str) -> str:
    without_tags = re.sub(r"<[^>]+>", " ", document)
    return " ".join(html.unescape(without_tags).split())


def test_every_page_template_is_exercised() -> None:
    names = {path.stem for path in (TEMPLATE_DIRECTORY / "pages").glob("*.html") if not path.stem.startswith("_")}
    assert names == {*PAGES, "message"}


@pytest.mark.parametrize("language", list(Language))
def test_every_page_renders_with_its_language(language: Language) -> None:
    for name, document in rendered_pages(language).items():
        assert f'<html lang="{language.value}">' in document, name
        assert "<h1>" in document, name
        assert 'name="csrf_token"' in document or "<form" not in document, name


def test_spanish_pages_hold_no_english_sentence() -> None:
    english = english_sentences()
    assert len(english) > 150
    for name, document in rendered_pages(Language.SPANISH).items():
        text = visible_text(document)
        left = [sentence for sentence in english if sentence in text]
        assert not left, f"{name}: {left}"


def test_english_and_spanish_have_the_same_words() -> None:
    assert set(RENDERER.words(Language.ENGLISH)) == set(RENDERER.words(Language.SPANISH))


def test_errors_are_summarised_at_the_top_and_tied_to_their_field() -> None:
    document = RENDERER.page("find", Language.ENGLISH, **PAGES["find"])
    summary = document.index('class="error-summary"')
    assert summary < document.index("<h1>")
    assert '<a href="#number">Enter the number</a>' in document
    assert 'aria-describedby="number-hint number-error"' in document
    assert 'aria-invalid="true"' in document
    assert "<title>Error: Find the case" in document


def test_a_missing_word_fails_loudly() -> None:
    with pytest.raises(Exception, match="no-such-key"):
        RENDERER.page(
            "find", Language.SPANISH, **{**PAGES["find"], "errors": [FieldError(field="x", key="no-such-key")]}
        )


@pytest.mark.parametrize(
    ("language", "resumed"),
    [(Language.ENGLISH, "texts and calls to this number resumed"), (Language.SPANISH, "mensajes de texto y llamadas")],
)
def test_start_says_calls_resume_too_the_same_for_every_number(language: Language, resumed: str) -> None:
    reply = RENDERER.sms_reply("start", language, service_name="Custody Watch", help_url="https://h")
    assert reply is not None
    assert resumed in reply
    assert len(reply) <= 160  # one segment, without an accent to make it UCS-2


@pytest.mark.parametrize("language", list(Language))
def test_sms_replies_come_from_templates(language: Language) -> None:
    for keyword in ("stop", "start", "help", "acknowledge"):
        reply = RENDERER.sms_reply(keyword, language, service_name="CW", help_url="https://h")
        assert reply is not None
        assert reply.startswith("CW")
        assert "\n" not in reply
    assert RENDERER.sms_reply("other", language, service_name="CW", help_url="https://h") is None


def test_find_form_names_each_missing_field() -> None:
    assert {e.field for e in FindForm().problems({"cook"})} == {"agency_id", "kind", "number"}
    assert FindForm(agency_id="cook", kind="case_number", number="CR-1").problems({"cook"}) == []
    assert [e.key for e in FindForm(agency_id="x", kind="case_number", number="1").problems({"cook"})] == [
        "agency_id.missing"
    ]
    assert [e.key for e in FindForm(agency_id="cook", kind="booking_number", number="9" * 65).problems({"cook"})] == [
        "number.too_long"
    ]


def test_contact_form_uses_the_domain_rules() -> None:
    normalised, errors = ContactForm(sms="(512) 555-0123", email="Name@Example.org").normalised("US")
    assert errors == []
    assert normalised.sms == "+15125550123"
    assert [e.key for e in ContactForm().normalised("US")[1]] == ["sms.missing"]
    assert [e.key for e in ContactForm(sms="12", email="nope").normalised("US")[1]] == ["sms.invalid", "email.invalid"]


def test_options_form_quiet_hours() -> None:
    form = OptionsForm(
        language="es",
        timezone="America/Chicago",
        event_types=["released"],
        quiet="on",
        quiet_start="22:00",
        quiet_end="06:30",
    )
    assert form.problems() == []
    assert form.quiet_hours() == (time(22, 0), time(6, 30))
    off = form.model_copy(update={"quiet": "off"})
    assert off.quiet_hours() == (time(0, 0), time(0, 0))
    same = form.model_copy(update={"quiet_end": "22:00"})
    assert [e.key for e in same.problems()] == ["quiet_end.same"]
    bad = OptionsForm(language="fr", timezone="Mars/Olympus", event_types=["nope"], quiet="")
    assert [e.key for e in bad.problems()] == [
        "language.missing",
        "timezone.invalid",
        "event_types.missing",
        "quiet.missing",
    ]
    assert OptionsForm.of(Language.ENGLISH, "UTC", ALL_EVENT_TYPES, (time(0), time(0))).quiet == "off"


def test_every_form_error_key_has_words() -> None:
    words = RENDERER.words(Language.ENGLISH)
    forms_source = (TEMPLATE_DIRECTORY.parent / "portal").glob("*.py")
    keys = {key for path in forms_source for key in re.findall(r'key=f?"([a-z_.{}]+)"', path.read_text())}
    concrete = {key.replace("{channel}", channel) for key in keys for channel in ("sms", "email")}
    assert concrete
    assert {f"error.{key}" for key in concrete} <= set(words)


def test_names_match_without_case_accents_or_order() -> None:
    assert name_words("Pérez-Núñez, José") == ["jose", "nunez", "perez"]
    assert name_words("  ") == []
    assert name_words(None) == []
    assert [e.key for e in NameForm(agency_id="cook", last_name="--", first_name="Ana").problems({"cook"})] == [
        "last_name.missing"
    ]


def test_draft_knows_how_far_it_got() -> None:
    assert not Draft().found()
    found = Draft(agency_id="cook", kind="case_number", number="1")
    assert found.found()
    assert not found.reachable()
    assert found.model_copy(update={"email": "a@b.org"}).reachable()


@pytest.mark.parametrize("language", list(Language))
@pytest.mark.parametrize("change", list(SubscriptionChange))
def test_subscription_changed_notice_renders(language: Language, change: SubscriptionChange) -> None:
    notice = NotificationRequested(
        notification_id="n-1",
        kind=NotificationKind.SUBSCRIPTION_CHANGED,
        subscription_id="s-1",
        agency_id="cook",
        channel=Channel.SMS,
        contact_ciphertext="c",
        contact_masked="+1••••23",
        language=language,
        timezone="America/Chicago",
        urgency=Urgency.INFORMATIONAL,
        change=change,
        requested_at=datetime.now(UTC),
    )
    links = NoticeLinks(manage_url="https://s.example/v1/manage/t")
    sms = render_sms(notice, None, links)
    assert "https://s.example/v1/manage/t" in sms.body
    email = render_email(notice, None, links)
    assert f'<html lang="{language.value}">' in email.html_body
    assert ("not you" in email.text_body) is (language is Language.ENGLISH)
    assert ("no fue usted" in email.text_body) is (language is Language.SPANISH)
