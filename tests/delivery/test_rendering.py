"""Every notice kind renders on every channel in every language, short enough, escaped, and isolated on error."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.delivery.rendering import (
    ABOUT_A_CASE,
    TEMPLATE_DIRECTORY,
    NoticeLinks,
    NoticeRenderer,
    TemplateError,
    format_moment,
    render_email,
    render_sms,
    sms_segments,
)
from shared.events import AgencyProfile, CustodyFacts, NotificationKind, NotificationRequested, SubjectIdentifier
from shared.vocabulary import Channel, CustodyStatus, IdentifierKind, Language, ReleaseReason, urgency_of

AGENCY = AgencyProfile(
    agency_id="harris",
    name="Harris County Jail",
    timezone="America/Chicago",
    contact_phone="+1 713-555-0100",
    victim_services_phone="+1 713-555-0199",
    victim_services_url="https://harris.example.gov/victims",
    updated_at=datetime(2026, 1, 1, tzinfo=UTC),
)
LINKS = NoticeLinks(
    manage_url="https://subscribe.example.org/m/Xy12AbCdEfGhIjKl",
    unsubscribe_url="https://subscribe.example.org/u/Xy12AbCdEfGhIjKl",
    acknowledge_url="https://notify.example.org/a/AbCdEfGhIjKlMnOpQrStUv",
    verify_url="https://subscribe.example.org/v/Zz98",
)
EFFECTIVE = datetime(2026, 11, 27, 20, 5, tzinfo=UTC)  # 14:05 in Chicago (CST)


def facts(status: CustodyStatus, **changes: object) -> CustodyFacts:
    values: dict[str, object] = {
        "custody_event_id": "evt-1",
        "identifier": SubjectIdentifier(kind=IdentifierKind.CASE_NUMBER, value="2026-CR-004512"),
        "display_name": "JOHNATHAN Q. DOE",
        "facility": "Harris County Jail - Central",
        "status": status,
        "release_reason": ReleaseReason.OWN_RECOGNISANCE if status is CustodyStatus.RELEASED else None,
        "transfer_destination": "TDCJ Huntsville Unit" if status is CustodyStatus.TRANSFERRED else None,
        "court_date": datetime(2026, 12, 3, 15, 0, tzinfo=UTC) if status is CustodyStatus.COURT_DATE_SET else None,
        "effective_at": EFFECTIVE,
        "feed_received_at": EFFECTIVE,
    }
    return CustodyFacts.model_validate(values | changes)


def notice(
    kind: NotificationKind,
    language: Language,
    channel: Channel = Channel.SMS,
    status: CustodyStatus = CustodyStatus.RELEASED,
    custody: CustodyFacts | None = None,
) -> NotificationRequested:
    with_custody = kind in {NotificationKind.CURRENT_STATUS, *ABOUT_A_CASE}
    return NotificationRequested(
        notification_id=f"n-{kind}-{language}-{status}",
        kind=kind,
        subscription_id="sub-1",
        agency_id="harris",
        channel=channel,
        contact_ciphertext="cipher",
        contact_masked="+1 ••• ••• 0100",
        language=language,
        timezone="America/Chicago",
        urgency=urgency_of(status) if kind is NotificationKind.STATUS_CHANGE else urgency_of(CustodyStatus.IN_CUSTODY),
        custody=custody or (facts(status) if with_custody else None),
        requested_at=EFFECTIVE,
    )


def secret_for(kind: NotificationKind) -> str | None:
    return "482913" if kind is NotificationKind.VERIFICATION else None


CASES = [
    (kind, language, status)
    for kind in NotificationKind
    for language in Language
    for status in (CustodyStatus if kind is NotificationKind.STATUS_CHANGE else [CustodyStatus.IN_CUSTODY])
]


@pytest.mark.parametrize(("kind", "language", "status"), CASES)
def test_every_sms_renders_within_two_segments(
    kind: NotificationKind, language: Language, status: CustodyStatus
) -> None:
    rendered = render_sms(notice(kind, language, status=status), AGENCY, LINKS, secret=secret_for(kind))
    assert rendered.segments <= 2, rendered.body
    assert rendered.segments == sms_segments(rendered.body)
    assert sms_segments(rendered.body) == (1 if len(rendered.body) <= 160 else 2), "GSM-7 only, never UCS-2"
    assert rendered.body.startswith("Custody Watch")
    assert "\n" not in rendered.body
    assert "  " not in rendered.body
    assert "None" not in rendered.body
    if kind is not NotificationKind.VERIFICATION:
        assert "Harris County Jail" in rendered.body


@pytest.mark.parametrize(("kind", "language", "status"), CASES)
def test_every_email_renders_with_subject_text_and_html(
    kind: NotificationKind, language: Language, status: CustodyStatus
) -> None:
    rendered = render_email(
        notice(kind, language, Channel.EMAIL, status=status), AGENCY, LINKS, secret=secret_for(kind)
    )
    assert rendered.subject.startswith(("Custody Watch", "URGENT", "URGENTE"))
    assert "\n" not in rendered.subject
    assert rendered.html_body.lstrip().startswith("<!DOCTYPE html>")
    assert f'<html lang="{language}">' in rendered.html_body
    for body in (rendered.text_body, rendered.html_body):
        assert "None" not in body
        assert "Custody Watch" in body
    if kind is NotificationKind.VERIFICATION:
        assert "482913" in rendered.text_body
        assert "482913" in rendered.html_body
        assert LINKS.verify_url in rendered.text_body  # type: ignore[operator]
    else:
        assert LINKS.unsubscribe_url in rendered.text_body  # type: ignore[operator]
        assert f'href="{LINKS.unsubscribe_url}"' in rendered.html_body
        assert "+1 713-555-0199" in rendered.text_body


def test_an_urgent_release_says_what_where_when_and_how_to_confirm_and_stop() -> None:
    sms = render_sms(notice(NotificationKind.STATUS_CHANGE, Language.ENGLISH), AGENCY, LINKS)
    assert sms.body == (
        "Custody Watch - Harris County Jail: JOHNATHAN Q. DOE (case 2026-CR-004512) was RELEASED "
        "(on own recognizance) from Harris County Jail - Central, Nov 27, 2026, 2:05 PM CST. "
        "Help: +1 713-555-0199. Reply OK to confirm or tap https://notify.example.org/a/AbCdEfGhIjKlMnOpQrStUv. "
        "Reply STOP to end"
    )
    spanish = render_sms(notice(NotificationKind.STATUS_CHANGE, Language.SPANISH), AGENCY, LINKS)
    assert "fue LIBERADO/A (bajo palabra) en Harris County Jail - Central, 27 nov 2026, 14:05 CST" in spanish.body
    assert "Confirme: responda OK o abra https://notify.example.org/a/" in spanish.body
    assert spanish.body.endswith("Responda STOP para terminar")

    email = render_email(notice(NotificationKind.STATUS_CHANGE, Language.ENGLISH, Channel.EMAIL), AGENCY, LINKS)
    assert email.subject.startswith("URGENT: Custody Watch: JOHNATHAN Q. DOE (case 2026-CR-004512) was RELEASED")
    assert "When: Nov 27, 2026, 2:05 PM CST" in email.text_body
    assert "Where: Harris County Jail - Central, Harris County Jail" in email.text_body
    assert f'href="{LINKS.acknowledge_url}"' in email.html_body


def test_informational_notices_carry_no_acknowledgement() -> None:
    links = LINKS
    sms = render_sms(
        notice(NotificationKind.STATUS_CHANGE, Language.ENGLISH, status=CustodyStatus.TRANSFERRED), AGENCY, links
    )
    assert "Reply OK" not in sms.body
    assert "to TDCJ Huntsville Unit" in sms.body
    assert sms.body.endswith("Reply STOP to end")


def test_court_dates_and_times_are_in_the_subscribers_zone_and_language() -> None:
    court = notice(NotificationKind.STATUS_CHANGE, Language.SPANISH, status=CustodyStatus.COURT_DATE_SET)
    assert "tiene AUDIENCIA judicial: 3 dic 2026, 09:00 CST" in render_sms(court, AGENCY, LINKS).body
    assert format_moment(EFFECTIVE, Language.ENGLISH, ZoneInfo("America/New_York")) == ("Nov 27, 2026, 3:05 PM EST")


def test_without_agency_profile_or_links_it_still_renders() -> None:
    bare = NoticeLinks()
    for language in Language:
        sms = render_sms(notice(NotificationKind.STATUS_CHANGE, language), None, bare)
        assert sms.body.startswith("Custody Watch:")
        assert "None" not in sms.body
        email = render_email(notice(NotificationKind.FEED_SILENCE, language, Channel.EMAIL), None, bare)
        assert "None" not in email.text_body + email.html_body
    no_name = facts(CustodyStatus.ESCAPED, display_name=None, facility=None)
    sms = render_sms(notice(NotificationKind.STATUS_CHANGE, Language.ENGLISH, custody=no_name), AGENCY, LINKS)
    assert "The person in case 2026-CR-004512 ESCAPED from custody, Nov 27" in sms.body


def test_current_status_before_any_custody_record() -> None:
    pending = notice(NotificationKind.CURRENT_STATUS, Language.ENGLISH).model_copy(update={"custody": None})
    assert "no custody record yet" in render_sms(pending, AGENCY, LINKS).body
    assert "no custody record" in render_email(pending, AGENCY, LINKS).text_body


def test_verification_says_nothing_about_the_case() -> None:
    for language in Language:
        verification = notice(NotificationKind.VERIFICATION, language)
        sms = render_sms(verification, AGENCY, LINKS, secret="482913")
        assert "482913" in sms.body
        assert "2026-CR-004512" not in sms.body
        with pytest.raises(TemplateError):
            render_sms(verification, AGENCY, LINKS)


def test_html_is_escaped_and_text_is_not() -> None:
    hostile = facts(CustodyStatus.RELEASED, display_name='<script>alert("x")</script>', facility="A & B <Unit>")
    agency = AGENCY.model_copy(update={"name": "<b>Jail</b>"})
    email = render_email(
        notice(NotificationKind.STATUS_CHANGE, Language.ENGLISH, Channel.EMAIL, custody=hostile), agency, LINKS
    )
    assert "<script>" not in email.html_body
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in email.html_body
    assert "A &amp; B &lt;Unit&gt;" in email.html_body
    assert "<b>Jail</b>" not in email.html_body
    assert '<script>alert("x")</script>' in email.text_body
    assert "A & B <Unit>" in email.text_body


def test_a_status_change_without_custody_facts_is_a_template_error() -> None:
    broken = notice(NotificationKind.STATUS_CHANGE, Language.ENGLISH).model_copy(update={"custody": None})
    with pytest.raises(TemplateError):
        render_sms(broken, AGENCY, LINKS)


def test_a_broken_template_in_one_language_fails_only_that_language(tmp_path: Path) -> None:
    directory = tmp_path / "templates"
    shutil.copytree(TEMPLATE_DIRECTORY, directory)
    (directory / "es" / "status_change.sms.txt").write_text("{{ brand }} {{ no_such_variable }}")
    (directory / "es" / "status_change.email.html").unlink()
    renderer = NoticeRenderer(directory)

    with pytest.raises(TemplateError, match="no_such_variable"):
        renderer.render_sms(notice(NotificationKind.STATUS_CHANGE, Language.SPANISH), AGENCY, LINKS)
    with pytest.raises(TemplateError, match=re.escape("es/status_change.email.html")):
        renderer.render_email(notice(NotificationKind.STATUS_CHANGE, Language.SPANISH, Channel.EMAIL), AGENCY, LINKS)
    english = renderer.render_sms(notice(NotificationKind.STATUS_CHANGE, Language.ENGLISH), AGENCY, LINKS)
    assert "was RELEASED" in english.body
    other_kind = renderer.render_sms(notice(NotificationKind.FEED_RESTORED, Language.SPANISH), AGENCY, LINKS)
    assert "STOP" in other_kind.body


def test_syntax_errors_are_template_errors(tmp_path: Path) -> None:
    directory = tmp_path / "templates"
    shutil.copytree(TEMPLATE_DIRECTORY, directory)
    (directory / "en" / "feed_restored.sms.txt").write_text("{% if %}")
    with pytest.raises(TemplateError):
        NoticeRenderer(directory).render_sms(notice(NotificationKind.FEED_RESTORED, Language.ENGLISH), AGENCY, LINKS)


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),  # extension characters count twice: 160 septets
        ("€" * 81, 2),
        ("ñé" * 80, 1),  # GSM-7 basic set
        ("á" * 70, 1),  # UCS-2
        ("á" * 71, 2),
        ("á" * 134, 2),
        ("á" * 135, 3),
        ("😀" * 35, 1),  # two UTF-16 units each
        ("😀" * 36, 2),
    ],
)
def test_sms_segments(text: str, segments: int) -> None:
    assert sms_segments(text) == segments


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz ", max_size=1000))
def test_gsm_segments_grow_with_length(text: str) -> None:
    expected = 1 if len(text) <= 160 else -(-len(text) // 153)
    assert sms_segments(text) == expected
