"""Scheduled-date notices and the "Need help now?" line of urgent notices, in both languages, within budget."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.delivery.rendering import SMS_SEGMENT_BUDGET, NoticeLinks, render_email, render_sms
from shared.events import AgencyContact, AgencyResources, NotificationKind, NotificationRequested
from shared.vocabulary import URGENT_STATUSES, Channel, ContactRole, CustodyStatus, Language, Urgency
from tests.delivery.test_rendering import AGENCY, LINKS, facts, notice

HOTLINE = "+1 713-555-0142"
WITH_HOTLINE = AGENCY.model_copy(
    update={
        "resources": AgencyResources(contacts=[AgencyContact(role=ContactRole.HOTLINE, name="Line", phone=HOTLINE)])
    }
)
RELEASE_AT = datetime(2026, 12, 11, 15, 0, tzinfo=UTC)  # 9:00 AM in Chicago


def scheduled(kind: NotificationKind, language: Language, channel: Channel = Channel.SMS) -> NotificationRequested:
    court = kind in {NotificationKind.COURT_DATE_SCHEDULED, NotificationKind.COURT_REMINDER}
    return notice(kind, language, channel, status=CustodyStatus.IN_CUSTODY).model_copy(
        update={
            "custody": facts(CustodyStatus.IN_CUSTODY),
            "urgency": Urgency.INFORMATIONAL,
            "scheduled_for": RELEASE_AT,
            "court_name": "County Court 2" if court else None,
        }
    )


@pytest.mark.parametrize("language", list(Language))
@pytest.mark.parametrize("status", sorted(URGENT_STATUSES))
def test_urgent_notices_name_the_hotline_within_the_sms_budget(language: Language, status: CustodyStatus) -> None:
    sms = render_sms(notice(NotificationKind.STATUS_CHANGE, language, status=status), WITH_HOTLINE, LINKS)
    assert sms.segments <= SMS_SEGMENT_BUDGET, sms.body
    assert HOTLINE in sms.body
    assert ("Need help now?" if language is Language.ENGLISH else "¿Ayuda ya?") in sms.body
    email = render_email(
        notice(NotificationKind.STATUS_CHANGE, language, Channel.EMAIL, status=status), WITH_HOTLINE, LINKS
    )
    for body in (email.text_body, email.html_body):
        assert HOTLINE in body
        assert "https://harris.example.gov/victims" in body


def test_the_more_link_goes_only_when_the_sms_would_not_fit() -> None:
    short_link = WITH_HOTLINE.model_copy(update={"victim_services_url": "https://hc.gov/help"})
    for language, more in (
        (Language.ENGLISH, "More: https://hc.gov/help"),
        (Language.SPANISH, "Mas: https://hc.gov/help"),
    ):
        short = notice(NotificationKind.STATUS_CHANGE, language, status=CustodyStatus.REMOVED)
        assert more in render_sms(short, short_link, LINKS).body
    long_one = notice(NotificationKind.STATUS_CHANGE, Language.SPANISH, status=CustodyStatus.RELEASED)
    body = render_sms(long_one, WITH_HOTLINE, LINKS).body
    assert "Mas:" not in body
    assert HOTLINE in body


def test_informational_notices_keep_the_usual_help_line() -> None:
    sms = render_sms(
        notice(NotificationKind.STATUS_CHANGE, Language.ENGLISH, status=CustodyStatus.IN_CUSTODY), WITH_HOTLINE, LINKS
    )
    assert "Need help now?" not in sms.body
    assert "Help: +1 713-555-0199" in sms.body


@pytest.mark.parametrize("language", list(Language))
def test_scheduled_notices_say_the_date_in_the_subscribers_zone(language: Language) -> None:
    words = {
        NotificationKind.RELEASE_SCHEDULED: ("is scheduled to be RELEASED", "tiene SALIDA programada"),
        NotificationKind.RELEASE_REMINDER: ("Reminder:", "Recordatorio:"),
        NotificationKind.COURT_DATE_SCHEDULED: ("has a COURT DATE", "tiene AUDIENCIA judicial"),
        NotificationKind.COURT_REMINDER: ("County Court 2", "County Court 2"),
    }
    when = "Dec 11, 2026, 9:00 AM CST" if language is Language.ENGLISH else "11 dic 2026, 09:00 CST"
    for kind, (english, spanish) in words.items():
        sms = render_sms(scheduled(kind, language), WITH_HOTLINE, LINKS)
        assert sms.segments <= SMS_SEGMENT_BUDGET
        assert when in sms.body
        assert (english if language is Language.ENGLISH else spanish) in sms.body
        assert "Need help now?" not in sms.body
        email = render_email(scheduled(kind, language, Channel.EMAIL), WITH_HOTLINE, LINKS)
        assert when in email.text_body
        assert when in email.html_body


@pytest.mark.parametrize("language", list(Language))
@pytest.mark.parametrize("kind", [NotificationKind.CURRENT_STATUS, NotificationKind.NOW_HELD_BY])
def test_the_registration_confirmation_and_a_new_agency_name_the_hotline_within_budget(
    language: Language, kind: NotificationKind
) -> None:
    confirmation = notice(kind, language)
    sms = render_sms(confirmation, WITH_HOTLINE, LINKS)
    assert HOTLINE in sms.body
    assert sms.segments <= SMS_SEGMENT_BUDGET
    email = render_email(notice(kind, language, Channel.EMAIL), WITH_HOTLINE, LINKS)
    assert HOTLINE in email.text_body
    assert HOTLINE in email.html_body


def test_a_long_confirmation_link_goes_before_the_hotline() -> None:
    long_link = NoticeLinks(acknowledge_url="https://notify.example.org/v1/ack/" + "x" * 90)
    english = notice(NotificationKind.STATUS_CHANGE, Language.ENGLISH, status=CustodyStatus.RELEASED)
    sms = render_sms(english, WITH_HOTLINE, long_link)
    assert sms.segments <= SMS_SEGMENT_BUDGET
    assert f"Need help now? {HOTLINE}." in sms.body
    assert "Reply OK to confirm." in sms.body
    assert "x" * 90 not in sms.body
    assert str(LINKS.acknowledge_url) in render_sms(english, WITH_HOTLINE, LINKS).body  # kept when it fits
