"""Who hears that an agency's feed is silent, and that it is back: the pure rules."""

from __future__ import annotations

from datetime import UTC, datetime

from services.matching import domain
from services.matching.domain import KnownCustodyState
from shared.events import NotificationKind
from shared.vocabulary import Channel, CustodyStatus, Urgency
from tests.matching.factories import change, contact, subscription

NOW = datetime(2026, 3, 1, 13, 0, tzinfo=UTC)


def state(status: CustodyStatus, event_id: str = "event-1") -> KnownCustodyState:
    return KnownCustodyState(custody_event_id=event_id, change=change(status=status))


def test_only_subscribers_of_people_last_known_held_who_want_urgent_news_are_told() -> None:
    cases = [
        (subscription("held"), state(CustodyStatus.IN_CUSTODY)),
        (subscription("back"), state(CustodyStatus.RETURNED_TO_CUSTODY)),
        (subscription("released"), state(CustodyStatus.RELEASED)),
        (subscription("no-urgent", event_types=[CustodyStatus.TRANSFERRED]), state(CustodyStatus.IN_CUSTODY)),
        (subscription("stopped", contacts=[contact(Channel.SMS, active=False)]), state(CustodyStatus.IN_CUSTODY)),
    ]
    notices = domain.feed_silence_notices("silence-1", cases, NOW)
    assert {(n.subscription_id, n.channel) for n in notices} == {
        (name, channel) for name in ("held", "back") for channel in (Channel.SMS, Channel.EMAIL)
    }
    for notice in notices:
        assert notice.kind is NotificationKind.FEED_SILENCE
        assert notice.urgency is Urgency.INFORMATIONAL
        assert notice.custody is not None
        assert notice.custody.custody_event_id == "event-1"


def test_silence_notice_ids_are_one_per_outage_and_contact() -> None:
    cases = [(subscription("held"), state(CustodyStatus.IN_CUSTODY))]
    first = domain.feed_silence_notices("silence-1", cases, NOW)
    again = domain.feed_silence_notices("silence-1", cases, NOW)
    other = domain.feed_silence_notices("silence-2", cases, NOW)
    assert [n.notification_id for n in first] == [n.notification_id for n in again]
    assert not {n.notification_id for n in first} & {n.notification_id for n in other}
    status_change = domain.status_change_notification_id("event-1", "held", Channel.SMS)
    assert status_change not in {n.notification_id for n in first}


def test_restored_notice_goes_to_each_reachable_contact_without_custody_claims() -> None:
    told = [subscription("a"), subscription("b", contacts=[contact(Channel.EMAIL)])]
    notices = domain.feed_restored_notices("silence-1", told, NOW)
    assert sorted((n.subscription_id, n.channel) for n in notices) == sorted(
        [("a", Channel.SMS), ("a", Channel.EMAIL), ("b", Channel.EMAIL)]
    )
    assert all(n.kind is NotificationKind.FEED_RESTORED and n.custody is None for n in notices)
    assert domain.feed_notice_key(NotificationKind.FEED_SILENCE, "s") != domain.feed_notice_key(
        NotificationKind.FEED_RESTORED, "s"
    )
