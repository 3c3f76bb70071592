"""A person moved to another participating agency: the subscriptions follow. Pure: no I/O.

A booking of a person another agency transferred here (the same person number, within :data:`FOLLOW_WINDOW`)
carries that agency's subscriptions over; every change of the subject then goes to them too.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from functools import partial

from services.matching.domain import (
    NOTIFICATION_NAMESPACE,
    custody_facts,
    notices_to,
    reachable_contacts,
    status_change_notification_id,
)
from shared.events import CustodyStatusChanged, NotificationKind, NotificationRequested, SubscriptionState
from shared.vocabulary import Channel, CustodyStatus, IdentifierKind, Urgency, normalise_identifier

BOOKED = frozenset({CustodyStatus.IN_CUSTODY, CustodyStatus.RETURNED_TO_CUSTODY})
"""The changes that carry the subscriptions of a person transferred here over to this agency's subject."""

FOLLOW_WINDOW = timedelta(days=30)
"""How long after a transfer the receiving agency's booking of the same person number carries subscriptions over."""


def person_numbers(change: CustodyStatusChanged) -> list[str]:
    """Only a person / A-number names the same person across agencies (case and booking numbers are local)."""
    return sorted({normalise_identifier(i.value) for i in change.identifiers if i.kind is IdentifierKind.PERSON_NUMBER})


def now_held_by_notice_id(subscription_id: str, agency_id: str, subject_id: str, channel: Channel) -> str:
    """Once per subscription and receiving subject, whichever of its changes first carried the subscription over."""
    return str(uuid.uuid5(NOTIFICATION_NAMESPACE, f"now_held_by|{subscription_id}|{agency_id}|{subject_id}|{channel}"))


def follower_notices(
    custody_event_id: str,
    change: CustodyStatusChanged,
    followers: list[SubscriptionState],
    *,
    newly_following: set[str],
    agency_name: str,
    requested_at: datetime,
) -> list[NotificationRequested]:
    """The receiving agency's notices to subscriptions that followed the person there: the first says, in words,
    who holds the person now; later ones are its status changes. They are the receiving agency's notices (its
    name and resources), about the subscriber's own case number."""
    notices: list[NotificationRequested] = []
    for subscription in sorted(followers, key=lambda s: s.subscription_id):
        facts = custody_facts(custody_event_id, change, subscription.identifier)
        new = subscription.subscription_id in newly_following
        if new:
            ids = partial(now_held_by_notice_id, subscription.subscription_id, change.agency_id, change.subject_id)
            kind = NotificationKind.NOW_HELD_BY
        elif change.status in subscription.event_types and not change.case_information_only:
            ids = partial(status_change_notification_id, custody_event_id, subscription.subscription_id)
            kind = NotificationKind.STATUS_CHANGE
        else:
            continue
        extra: dict[str, object] = {"agency_id": change.agency_id}
        if new:
            extra |= {"now_held_by": agency_name, "urgency": Urgency.INFORMATIONAL}
        notices += [
            notice.model_copy(update=extra)
            for notice in notices_to(
                subscription,
                reachable_contacts(subscription),
                kind=kind,
                facts=facts,
                notification_id=ids,
                requested_at=requested_at,
            )
        ]
    return notices
