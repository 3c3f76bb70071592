"""The feed-silence and feed-restored notices: plain words, the last known status, within two SMS segments."""

from __future__ import annotations

from services.delivery.rendering import render_email, render_sms
from shared.events import NotificationKind
from shared.vocabulary import Channel, CustodyStatus, Language
from tests.delivery.test_rendering import AGENCY, LINKS, facts, notice


def test_silence_says_the_status_cannot_be_confirmed_and_not_to_assume_custody() -> None:
    sms = render_sms(
        notice(NotificationKind.FEED_SILENCE, Language.ENGLISH, custody=facts(CustodyStatus.IN_CUSTODY)), AGENCY, LINKS
    )
    assert "CANNOT CONFIRM the custody status of JOHNATHAN Q. DOE (case 2026-CR-004512)" in sms.body
    assert "Do not assume they are still held" in sms.body
    assert "call +1 713-555-0100" in sms.body
    assert sms.segments <= 2
    email = render_email(
        notice(NotificationKind.FEED_SILENCE, Language.ENGLISH, Channel.EMAIL, custody=facts(CustodyStatus.IN_CUSTODY)),
        AGENCY,
        LINKS,
    )
    assert "cannot be confirmed" in email.subject
    assert (
        "The last update we received: JOHNATHAN Q. DOE (case 2026-CR-004512) was BOOKED INTO CUSTODY" in email.text_body
    )
    assert "do not assume the person is still in custody" in email.html_body


def test_silence_and_restored_in_spanish_fit_two_segments() -> None:
    for kind in (NotificationKind.FEED_SILENCE, NotificationKind.FEED_RESTORED):
        custody = facts(CustodyStatus.IN_CUSTODY) if kind is NotificationKind.FEED_SILENCE else None
        sms = render_sms(notice(kind, Language.SPANISH, custody=custody), AGENCY, LINKS)
        assert sms.segments <= 2, sms.body
        assert "Responda STOP" in sms.body
    spanish = render_sms(
        notice(NotificationKind.FEED_SILENCE, Language.SPANISH, custody=facts(CustodyStatus.IN_CUSTODY)), AGENCY, LINKS
    )
    assert "NO PODEMOS CONFIRMAR" in spanish.body


def test_restored_says_updates_arrive_again_without_claiming_a_status() -> None:
    sms = render_sms(notice(NotificationKind.FEED_RESTORED, Language.ENGLISH), AGENCY, LINKS)
    assert "arriving again" in sms.body
    assert "RELEASED" not in sms.body
    assert "CUSTODY" not in sms.body
