"""The pure matching and fan-out rules: who is reachable, which notice, which id, which urgency."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.matching import domain
from services.matching.domain import KnownCustodyState
from services.matching.settings import MatchingSettings
from shared.events import NotificationKind, SubjectIdentifier
from shared.vocabulary import Channel, CustodyStatus, IdentifierKind, Urgency
from tests.kafkautil import PRODUCTION_KAFKA
from tests.matching.factories import change, contact, subscription

NOW = datetime(2026, 3, 1, 13, 0, tzinfo=UTC)


def test_fan_out_one_notice_per_reachable_contact_of_each_subscription() -> None:
    subscriptions = [subscription(f"sub-{n}") for n in range(5)]
    notices = domain.status_change_notices("event-1", change(), subscriptions, NOW)
    assert len(notices) == 10
    assert {(n.subscription_id, n.channel) for n in notices} == {
        (f"sub-{n}", channel) for n in range(5) for channel in (Channel.SMS, Channel.EMAIL)
    }
    assert len({n.notification_id for n in notices}) == 10


def test_notice_carries_the_subscribers_settings_and_the_custody_facts() -> None:
    sub = subscription("sub-1", contacts=[contact(Channel.EMAIL, tag="t")])
    custody = change(status=CustodyStatus.RELEASED)
    [notice] = domain.status_change_notices("event-1", custody, [sub], NOW)
    assert notice.kind == NotificationKind.STATUS_CHANGE
    assert notice.contact_ciphertext == "gAAAA-email-t"
    assert notice.contact_masked == "v•••@example.org"
    assert (notice.language, notice.timezone) == (sub.language, sub.timezone)
    assert (notice.quiet_hours_start, notice.quiet_hours_end) == (sub.quiet_hours_start, sub.quiet_hours_end)
    assert notice.manage_url_ciphertext == "gAAAA-manage-sub-1"
    assert notice.unsubscribe_url_ciphertext == "gAAAA-unsubscribe-sub-1"
    assert notice.urgency == Urgency.URGENT
    assert notice.requested_at == NOW
    assert notice.custody is not None
    assert notice.custody.custody_event_id == "event-1"
    assert notice.custody.status == CustodyStatus.RELEASED
    assert notice.custody.feed_received_at == custody.received_at
    assert notice.custody.effective_at == custody.effective_at


def test_sms_notice_has_no_email_unsubscribe_link() -> None:
    [notice] = domain.status_change_notices(
        "event-1", change(), [subscription("sub-1", contacts=[contact(Channel.SMS)])], NOW
    )
    assert notice.unsubscribe_url_ciphertext is None


def test_notice_names_the_subscribers_own_identifier_only() -> None:
    booking = SubjectIdentifier(kind=IdentifierKind.BOOKING_NUMBER, value="b 77")
    person = SubjectIdentifier(kind=IdentifierKind.PERSON_NUMBER, value="P-9")
    sub = subscription("sub-1", identifier=booking)
    [notice, _] = domain.status_change_notices("e", change(identifiers=[person, booking]), [sub], NOW)
    assert notice.custody is not None
    assert notice.custody.identifier == booking


def test_no_notice_to_unverified_stopped_or_non_active_subscriptions() -> None:
    subscriptions = [
        subscription("pending", status="pending"),
        subscription("cancelled", status="cancelled"),
        subscription("unverified", contacts=[contact(Channel.SMS, verified=False)]),
        subscription("stopped", contacts=[contact(Channel.SMS, active=False)]),
        subscription("mixed", contacts=[contact(Channel.SMS, verified=False), contact(Channel.EMAIL)]),
    ]
    notices = domain.status_change_notices("event-1", change(), subscriptions, NOW)
    assert [(n.subscription_id, n.channel) for n in notices] == [("mixed", Channel.EMAIL)]


def test_only_the_event_types_a_subscriber_chose() -> None:
    released_only = subscription("sub-1", event_types=[CustodyStatus.RELEASED])
    assert domain.status_change_notices("e1", change(status=CustodyStatus.TRANSFERRED), [released_only], NOW) == []
    assert len(domain.status_change_notices("e2", change(status=CustodyStatus.RELEASED), [released_only], NOW)) == 2


def test_another_agencys_subscription_never_matches() -> None:
    other = subscription("sub-1", agency_id="agency-b")
    assert domain.status_change_notices("e", change(), [other], NOW) == []


def test_one_contact_per_channel_even_if_listed_twice() -> None:
    sub = subscription("sub-1", contacts=[contact(Channel.SMS, tag="a"), contact(Channel.SMS, tag="b")])
    [notice] = domain.status_change_notices("e", change(), [sub], NOW)
    assert notice.contact_ciphertext == "gAAAA-sms-a"


def test_urgency_follows_safety() -> None:
    urgent = {CustodyStatus.RELEASED, CustodyStatus.ESCAPED, CustodyStatus.REMOVED, CustodyStatus.DECEASED}
    for status in CustodyStatus:
        [notice] = domain.status_change_notices(
            "e", change(status=status), [subscription("s", contacts=[contact(Channel.SMS)])], NOW
        )
        assert notice.urgency == (Urgency.URGENT if status in urgent else Urgency.INFORMATIONAL), status


def test_notification_ids_are_deterministic_and_distinct_per_cause() -> None:
    first = domain.status_change_notification_id("event-1", "sub-1", Channel.SMS)
    assert first == domain.status_change_notification_id("event-1", "sub-1", Channel.SMS)
    assert uuid.UUID(first).version == 5
    others = {
        domain.status_change_notification_id("event-2", "sub-1", Channel.SMS),
        domain.status_change_notification_id("event-1", "sub-2", Channel.SMS),
        domain.status_change_notification_id("event-1", "sub-1", Channel.EMAIL),
        domain.current_status_notification_id("sub-1", "event-1", Channel.SMS),
    }
    assert first not in others
    assert len(others) == 4


@given(event_id=st.text(min_size=1, max_size=40), subscription_id=st.text(min_size=1, max_size=40))
def test_same_cause_same_notices(event_id: str, subscription_id: str) -> None:
    subs = [subscription(subscription_id)]
    first = domain.status_change_notices(event_id, change(), subs, NOW)
    again = domain.status_change_notices(event_id, change(), subs, NOW)
    assert first == again


def test_current_status_for_contacts_that_just_became_reachable() -> None:
    known = [KnownCustodyState(custody_event_id="event-9", change=change(status=CustodyStatus.IN_CUSTODY))]
    pending = subscription("sub-1", status="pending", contacts=[contact(Channel.SMS, verified=False)])
    verified = subscription("sub-1", contacts=[contact(Channel.SMS)], version=2)
    [notice] = domain.current_status_notices(pending, verified, known, NOW)
    assert notice.kind == NotificationKind.CURRENT_STATUS
    assert notice.notification_id == domain.current_status_notification_id("sub-1", "event-9", Channel.SMS)
    assert notice.urgency == Urgency.INFORMATIONAL
    assert notice.custody is not None
    assert notice.custody.custody_event_id == "event-9"


def test_current_status_ignores_chosen_event_types_and_follows_urgency() -> None:
    known = [KnownCustodyState(custody_event_id="event-9", change=change(status=CustodyStatus.RELEASED))]
    wants_court_dates = subscription(
        "sub-1", contacts=[contact(Channel.SMS)], event_types=[CustodyStatus.COURT_DATE_SET]
    )
    [notice] = domain.current_status_notices(None, wants_court_dates, known, NOW)
    assert notice.urgency == Urgency.URGENT


def test_current_status_only_for_the_newly_reachable_channel() -> None:
    known = [KnownCustodyState(custody_event_id="event-9", change=change())]
    sms_only = subscription("sub-1", contacts=[contact(Channel.SMS), contact(Channel.EMAIL, verified=False)])
    both = subscription("sub-1", contacts=[contact(Channel.SMS), contact(Channel.EMAIL)], version=2)
    [notice] = domain.current_status_notices(sms_only, both, known, NOW)
    assert notice.channel == Channel.EMAIL
    assert domain.current_status_notices(both, both, known, NOW) == []


def test_current_status_after_start_and_not_after_stop() -> None:
    known = [KnownCustodyState(custody_event_id="event-9", change=change())]
    active = subscription("sub-1", contacts=[contact(Channel.SMS)])
    stopped = subscription("sub-1", contacts=[contact(Channel.SMS, active=False)], version=2)
    restarted = subscription("sub-1", contacts=[contact(Channel.SMS)], version=3)
    assert domain.current_status_notices(active, stopped, known, NOW) == []
    assert len(domain.current_status_notices(stopped, restarted, known, NOW)) == 1


def test_current_status_when_a_subscription_moves_to_another_case() -> None:
    known = [KnownCustodyState(custody_event_id="event-9", change=change())]
    other_case = SubjectIdentifier(kind=IdentifierKind.PERSON_NUMBER, value="P-1")
    before = subscription("sub-1", identifier=other_case, contacts=[contact(Channel.SMS)])
    moved = subscription("sub-1", contacts=[contact(Channel.SMS)], version=2)
    assert len(domain.current_status_notices(before, moved, known, NOW)) == 1


def test_no_current_status_without_a_known_status_or_for_a_cancelled_subscription() -> None:
    known = [KnownCustodyState(custody_event_id="event-9", change=change())]
    assert domain.current_status_notices(None, subscription("sub-1"), [], NOW) == []
    assert domain.current_status_notices(None, subscription("sub-1", status="cancelled"), known, NOW) == []


def test_versions_only_move_forward() -> None:
    assert domain.is_newer(None, subscription("s", version=1))
    assert domain.is_newer(subscription("s", version=1), subscription("s", version=2))
    assert not domain.is_newer(subscription("s", version=2), subscription("s", version=2))
    assert not domain.is_newer(subscription("s", version=3), subscription("s", version=2))


def test_case_key_normalises_the_identifier() -> None:
    identifier = SubjectIdentifier(kind=IdentifierKind.BOOKING_NUMBER, value=" b-12 34 ")
    assert domain.case_key("agency-a", identifier) == ("agency-a", IdentifierKind.BOOKING_NUMBER, "B-1234")


def test_settings_give_each_instance_its_transactional_id(monkeypatch) -> None:
    monkeypatch.setenv("MATCHING_INSTANCE_ID", "matching-0")
    settings = MatchingSettings()
    assert settings.transactional_id == "matching-matching-0"
    assert settings.http_port == 8003
    assert settings.service_name == "matching"
    monkeypatch.delenv("MATCHING_INSTANCE_ID")
    assert MatchingSettings().instance_id != ""


def test_production_needs_a_stable_instance_id() -> None:
    token = "k7Yq2-Rv9Lm4TxWb8NcZ3pHs6JdF1gQe"
    with pytest.raises(ValidationError, match="MATCHING_INSTANCE_ID"):
        MatchingSettings(environment="production", operator_token=token, kafka=PRODUCTION_KAFKA)
    production = MatchingSettings(
        environment="production", instance_id="matching-1", operator_token=token, kafka=PRODUCTION_KAFKA
    )
    assert production.instance_id == "matching-1"


def test_a_clock_file_is_refused_in_production() -> None:
    token = "k7Yq2-Rv9Lm4TxWb8NcZ3pHs6JdF1gQe"
    with pytest.raises(ValidationError, match="MATCHING_CLOCK_FILE"):
        MatchingSettings(
            environment="production",
            instance_id="matching-1",
            operator_token=token,
            kafka=PRODUCTION_KAFKA,
            clock_file=Path("/tmp/clock"),
        )
