"""Unit tests of the rule that honours STOP, opt-outs and cancellations before every send attempt."""

from __future__ import annotations

import pytest

from services.delivery.domain import (
    CONTACT_REMOVED,
    CONTACT_UNVERIFIED,
    STOPPED_BY_SUBSCRIBER,
    SUBSCRIPTION_CANCELLED,
    SUBSCRIPTION_NOT_ACTIVE,
    ContactGate,
    SubscriptionGate,
    send_blocked_reason,
)
from shared.events import NotificationKind
from shared.vocabulary import Channel

PHONE = "+1 *** *** 0142"
EMAIL = "v***@example.org"


def gate(
    status: str = "active", *, sms_active: bool = True, sms_verified: bool = True, with_email: bool = True
) -> SubscriptionGate:
    contacts = {Channel.SMS: ContactGate(active=sms_active, verified=sms_verified, masked=PHONE)}
    if with_email:
        contacts[Channel.EMAIL] = ContactGate(active=True, verified=True, masked=EMAIL)
    return SubscriptionGate(status=status, version=3, contacts=contacts)


def reason(
    state: SubscriptionGate | None,
    kind: NotificationKind = NotificationKind.STATUS_CHANGE,
    channel: Channel = Channel.SMS,
    masked: str = PHONE,
) -> str | None:
    return send_blocked_reason(state, kind=kind, channel=channel, contact_masked=masked)


def test_without_any_known_state_the_notice_goes_as_requested() -> None:
    assert reason(None) is None
    assert reason(None, NotificationKind.VERIFICATION) is None


def test_an_active_subscription_with_an_active_verified_contact_gets_its_notice() -> None:
    assert reason(gate()) is None
    assert reason(gate(), channel=Channel.EMAIL, masked=EMAIL) is None


@pytest.mark.parametrize("kind", list(NotificationKind))
def test_a_stopped_contact_gets_nothing_of_any_kind(kind: NotificationKind) -> None:
    assert reason(gate(sms_active=False), kind) == STOPPED_BY_SUBSCRIBER
    assert reason(gate("pending", sms_active=False, sms_verified=False), kind) == STOPPED_BY_SUBSCRIBER


def test_stop_on_one_channel_leaves_the_other_channel_alone() -> None:
    assert reason(gate(sms_active=False), channel=Channel.EMAIL, masked=EMAIL) is None


@pytest.mark.parametrize(
    "kind", [kind for kind in NotificationKind if kind is not NotificationKind.SUBSCRIPTION_CHANGED]
)
def test_a_cancelled_subscription_gets_nothing_of_any_kind_but_the_farewell(kind: NotificationKind) -> None:
    assert reason(gate("cancelled"), kind) == SUBSCRIPTION_CANCELLED


def test_the_notice_that_a_subscription_was_cancelled_reaches_its_contacts_unless_they_stopped() -> None:
    assert reason(gate("cancelled"), NotificationKind.SUBSCRIPTION_CHANGED) is None
    assert reason(gate("cancelled", sms_active=False), NotificationKind.SUBSCRIPTION_CHANGED) == STOPPED_BY_SUBSCRIBER


def test_verification_codes_go_to_a_pending_subscription_and_custody_notices_do_not() -> None:
    pending = gate("pending", sms_verified=False)
    assert reason(pending, NotificationKind.VERIFICATION) is None
    assert reason(pending, NotificationKind.STATUS_CHANGE) == SUBSCRIPTION_NOT_ACTIVE


def test_a_code_for_a_newly_added_contact_of_an_active_subscription_still_goes() -> None:
    adding = gate(sms_verified=False)
    assert reason(adding, NotificationKind.VERIFICATION) is None
    assert reason(adding, NotificationKind.CURRENT_STATUS) == CONTACT_UNVERIFIED


def test_a_removed_or_replaced_contact_gets_nothing() -> None:
    assert reason(gate(with_email=False), channel=Channel.EMAIL, masked=EMAIL) == CONTACT_REMOVED
    assert reason(gate(), masked="+1 *** *** 0999") == CONTACT_REMOVED
    assert reason(gate(), NotificationKind.VERIFICATION, masked="+1 *** *** 0999") == CONTACT_REMOVED
