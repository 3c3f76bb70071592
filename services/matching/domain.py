"""Who hears about a custody change, on which channel, and with which notification id. Pure: no I/O.

Notification ids are UUIDv5 over the cause, so the same cause can never yield a second, different notice. The
reminders of scheduled dates (:mod:`services.matching.reminders.domain`) and the subscriptions that follow a
transferred person (:mod:`services.matching.transfers.domain`) build their notices with :func:`notices_to`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from functools import partial

from shared.envelope import encode, event_source, new_event
from shared.events import (
    ContactPointState,
    CustodyFacts,
    CustodyStatusChanged,
    NotificationKind,
    NotificationRequested,
    Payload,
    SubjectIdentifier,
    SubscriptionState,
)
from shared.vocabulary import (
    URGENT_STATUSES,
    Channel,
    CustodyStatus,
    IdentifierKind,
    Urgency,
    normalise_identifier,
    urgency_of,
)

NOTIFICATION_NAMESPACE = uuid.UUID("5d0f7c52-8a1e-4c5e-9b61-3f0f3c1c6e2a")
"""Fixed forever: changing it would change every notification id and break de-duplication downstream."""

CaseKey = tuple[str, IdentifierKind, str]
"""(agency id, identifier kind, normalised identifier value): how subscriptions and subjects meet."""


ChangePosition = tuple[datetime, int, datetime, str]
"""Where a custody change sits in its subject's history; the later position is the newer change."""


def change_position(custody_event_id: str, change: CustodyStatusChanged) -> ChangePosition:
    """Effective time, then the agency's sequence (-1 without one), as ingest orders a subject's records; then
    when ingest received it (a later feed at the same instant corrected the earlier one), then the event id.

    A total order: two distinct changes are never tied, so every replica and every delivery order agree.
    """
    sequence = -1 if change.sequence is None else change.sequence
    return (change.effective_at, sequence, change.received_at, custody_event_id)


class Freshness(StrEnum):
    NEWEST = "newest"
    STALE = "stale"
    REDELIVERED = "redelivered"


def freshness(newest_applied: ChangePosition | None, candidate: ChangePosition) -> Freshness:
    """Whether a change is newer than the subject's newest applied one (it notifies), older (recorded, silent:
    RELEASED arriving late after a newer IN CUSTODY must not tell the victim the wrong thing), or that very one."""
    if newest_applied is None:
        return Freshness.NEWEST
    if candidate[3] == newest_applied[3]:
        return Freshness.REDELIVERED
    return Freshness.NEWEST if candidate > newest_applied else Freshness.STALE


class KnownCustodyState(Payload):
    """The latest custody change matching knows for one subject, with the id of the event that carried it."""

    custody_event_id: str
    change: CustodyStatusChanged


def case_key(agency_id: str, identifier: SubjectIdentifier) -> CaseKey:
    return (agency_id, identifier.kind, normalise_identifier(identifier.value))


def status_change_notification_id(custody_event_id: str, subscription_id: str, channel: Channel) -> str:
    return str(uuid.uuid5(NOTIFICATION_NAMESPACE, f"status_change|{custody_event_id}|{subscription_id}|{channel}"))


def current_status_notification_id(subscription_id: str, custody_event_id: str, channel: Channel) -> str:
    return str(uuid.uuid5(NOTIFICATION_NAMESPACE, f"current|{subscription_id}|{channel}|{custody_event_id}"))


def feed_notice_id(kind: NotificationKind, silence_id: str, subscription_id: str, channel: Channel) -> str:
    """One notice per outage, kind and contact point."""
    return str(uuid.uuid5(NOTIFICATION_NAMESPACE, f"{kind}|{silence_id}|{subscription_id}|{channel}"))


def feed_notice_key(kind: NotificationKind, cause: str) -> str:
    """What a notice is about when that is not a custody change as such (the ``custody_event_id`` recorded with it,
    one notice per contact point): a feed outage, a date announced by a custody change, a reminder."""
    return f"{kind}:{cause}"


def reachable_contacts(subscription: SubscriptionState) -> list[ContactPointState]:
    """Contact points that may get notices now: an active subscription, verified, not stopped; one per channel."""
    if subscription.status != "active":
        return []
    by_channel: dict[Channel, ContactPointState] = {}
    for contact in subscription.contacts:
        if contact.verified and contact.active:
            by_channel.setdefault(contact.channel, contact)
    return list(by_channel.values())


def newly_reachable_contacts(before: SubscriptionState | None, after: SubscriptionState) -> list[ContactPointState]:
    """Contacts reachable in ``after`` that were not in ``before``: just verified, re-started, or re-activated.

    A subscription moved to another case is new to that case: all its reachable contacts count.
    """
    moved = before is not None and case_key(before.agency_id, before.identifier) != case_key(
        after.agency_id, after.identifier
    )
    reachable_before = {contact.channel for contact in reachable_contacts(before)} if before and not moved else set()
    return [contact for contact in reachable_contacts(after) if contact.channel not in reachable_before]


def is_newer(before: SubscriptionState | None, after: SubscriptionState) -> bool:
    """Subscription states may arrive twice or out of order; only a higher version replaces what we hold."""
    return before is None or after.version > before.version


def custody_facts(custody_event_id: str, change: CustodyStatusChanged, identifier: SubjectIdentifier) -> CustodyFacts:
    """What the notice says: the change's own fields of the same names; ``identifier`` is the subscriber's own, so
    no other identifier is disclosed."""
    told = CustodyFacts.model_fields.keys() & CustodyStatusChanged.model_fields.keys()
    return CustodyFacts(
        **change.model_dump(include=told),
        custody_event_id=custody_event_id,
        identifier=identifier,
        feed_received_at=change.received_at,
    )


def _notice(
    *,
    notification_id: str,
    kind: NotificationKind,
    subscription: SubscriptionState,
    contact: ContactPointState,
    facts: CustodyFacts | None,
    requested_at: datetime,
) -> NotificationRequested:
    """Without custody facts (a notice about the feed itself) a notice is informational."""
    return NotificationRequested(
        notification_id=notification_id,
        kind=kind,
        subscription_id=subscription.subscription_id,
        agency_id=subscription.agency_id,
        channel=contact.channel,
        contact_ciphertext=contact.ciphertext,
        contact_masked=contact.masked,
        language=subscription.language,
        timezone=subscription.timezone,
        urgency=urgency_of(facts.status) if facts else Urgency.INFORMATIONAL,
        quiet_hours_start=subscription.quiet_hours_start,
        quiet_hours_end=subscription.quiet_hours_end,
        custody=facts,
        manage_url_ciphertext=subscription.manage_url_ciphertext,
        unsubscribe_url_ciphertext=subscription.unsubscribe_url_ciphertext
        if contact.channel == Channel.EMAIL
        else None,
        requested_at=requested_at,
    )


def notices_to(
    subscription: SubscriptionState,
    contacts: list[ContactPointState],
    *,
    kind: NotificationKind,
    facts: CustodyFacts | None,
    notification_id: Callable[[Channel], str],
    requested_at: datetime,
) -> list[NotificationRequested]:
    """One notice of ``kind`` to each of ``contacts``, its id made from the channel."""
    return [
        _notice(
            notification_id=notification_id(contact.channel),
            kind=kind,
            subscription=subscription,
            contact=contact,
            facts=facts,
            requested_at=requested_at,
        )
        for contact in contacts
    ]


def status_change_notices(
    custody_event_id: str,
    change: CustodyStatusChanged,
    subscriptions: list[SubscriptionState],
    requested_at: datetime,
) -> list[NotificationRequested]:
    """One notice per reachable contact of each subscription that wants this status, in a stable order."""
    notices: list[NotificationRequested] = []
    for subscription in sorted(subscriptions, key=lambda s: s.subscription_id):
        if subscription.agency_id != change.agency_id or change.status not in subscription.event_types:
            continue
        notices += notices_to(
            subscription,
            reachable_contacts(subscription),
            kind=NotificationKind.STATUS_CHANGE,
            facts=custody_facts(custody_event_id, change, subscription.identifier),
            notification_id=partial(status_change_notification_id, custody_event_id, subscription.subscription_id),
            requested_at=requested_at,
        )
    return notices


def current_status_notices(
    before: SubscriptionState | None,
    after: SubscriptionState,
    known_states: list[KnownCustodyState],
    requested_at: datetime,
) -> list[NotificationRequested]:
    """The "current status" notice each newly reachable contact gets when its case already has a known status.

    It is sent whatever event types the subscriber chose: it answers "where is this person now?", which every new
    subscriber needs; the chosen types only filter later changes.
    """
    contacts = newly_reachable_contacts(before, after)
    notices: list[NotificationRequested] = []
    for state in sorted(known_states, key=lambda s: s.custody_event_id):
        if state.change.agency_id != after.agency_id:
            continue
        notices += notices_to(
            after,
            contacts,
            kind=NotificationKind.CURRENT_STATUS,
            facts=custody_facts(state.custody_event_id, state.change, after.identifier),
            notification_id=partial(current_status_notification_id, after.subscription_id, state.custody_event_id),
            requested_at=requested_at,
        )
    return notices


HELD_STATUSES = frozenset({CustodyStatus.IN_CUSTODY, CustodyStatus.RETURNED_TO_CUSTODY, CustodyStatus.COURT_DATE_SET})
"""Last known statuses that mean "held": a release nobody hears of would be the danger."""


def is_urgent_case(subscription: SubscriptionState, state: KnownCustodyState) -> bool:
    """A case whose release (or escape...) the subscriber wants to hear of, and whose subject was last known held."""
    return state.change.status in HELD_STATUSES and any(kind in URGENT_STATUSES for kind in subscription.event_types)


def feed_silence_notices(
    silence_id: str,
    cases: list[tuple[SubscriptionState, KnownCustodyState]],
    requested_at: datetime,
) -> list[NotificationRequested]:
    """Tell the subscribers of urgent cases that the status cannot be confirmed now (with the last one known)."""
    notices: list[NotificationRequested] = []
    for subscription, state in sorted(cases, key=lambda case: case[0].subscription_id):
        if not is_urgent_case(subscription, state):
            continue
        notices += notices_to(
            subscription,
            reachable_contacts(subscription),
            kind=NotificationKind.FEED_SILENCE,
            facts=custody_facts(state.custody_event_id, state.change, subscription.identifier),
            notification_id=partial(
                feed_notice_id, NotificationKind.FEED_SILENCE, silence_id, subscription.subscription_id
            ),
            requested_at=requested_at,
        )
    return notices


def feed_restored_notices(
    silence_id: str, told: list[SubscriptionState], requested_at: datetime
) -> list[NotificationRequested]:
    """Tell those who heard of the silence that updates arrive again (the changes themselves follow as usual)."""
    notices: list[NotificationRequested] = []
    for subscription in sorted(told, key=lambda s: s.subscription_id):
        notices += notices_to(
            subscription,
            reachable_contacts(subscription),
            kind=NotificationKind.FEED_RESTORED,
            facts=None,
            notification_id=partial(
                feed_notice_id, NotificationKind.FEED_RESTORED, silence_id, subscription.subscription_id
            ),
            requested_at=requested_at,
        )
    return notices


EVENT_SOURCE = event_source("matching")


def encode_notices(
    notices: list[NotificationRequested], *, trace_id: str, at: datetime
) -> list[tuple[NotificationRequested, bytes]]:
    """Each notice as the CloudEvent matching sends; the event id is the notification id, so a consumer can
    de-duplicate on either."""
    return [
        (
            notice,
            encode(
                new_event(
                    notice,
                    source=EVENT_SOURCE,
                    subject=notice.notification_id,
                    event_id=notice.notification_id,
                    trace_id=trace_id,
                    at=at,
                )
            ),
        )
        for notice in notices
    ]
