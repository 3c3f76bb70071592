"""Pure delivery logic: when a notice is due, how failures retry, how urgent notices repeat, what a receipt means.

No I/O here: every function takes the current time (and a random source where it needs one), so the rules are
unit-testable and the clock is injectable end to end.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field

from shared.backoff import Backoff
from shared.events import DeliveryStatus, NotificationKind
from shared.quiet_hours import in_quiet_hours
from shared.vocabulary import Channel, Urgency

# Notices a person is waiting for right now (a code they just asked for) never wait for morning.
IMMEDIATE_KINDS: frozenset[NotificationKind] = frozenset(
    {NotificationKind.VERIFICATION, NotificationKind.SUBSCRIPTION_CHANGED}
)
# An agency's pause holds custody notices only: a victim still gets the code they asked for.
PAUSABLE_KINDS: frozenset[NotificationKind] = frozenset(
    {
        NotificationKind.STATUS_CHANGE,
        NotificationKind.CURRENT_STATUS,
        NotificationKind.FEED_SILENCE,
        NotificationKind.FEED_RESTORED,
    }
)

FINAL_STATUSES: frozenset[DeliveryStatus] = frozenset(
    {
        DeliveryStatus.DELIVERED,
        DeliveryStatus.TEMPORARY_FAILURE,
        DeliveryStatus.PERMANENT_FAILURE,
        DeliveryStatus.TECHNICAL_FAILURE,
    }
)
_RANK: dict[DeliveryStatus, int] = {
    DeliveryStatus.CREATED: 0,
    DeliveryStatus.SENDING: 1,
    DeliveryStatus.SENT: 2,
} | dict.fromkeys(FINAL_STATUSES, 3)

DisableReason = Literal["opted_out", "hard_bounce"]


def zone(name: str) -> ZoneInfo:
    """The subscriber's time zone; an unknown name falls back to UTC rather than losing the notice."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def due_at(
    now: datetime,
    *,
    kind: NotificationKind,
    urgency: Urgency,
    timezone: str,
    quiet_start: time,
    quiet_end: time,
) -> datetime:
    """When to send: at once, or — for an informational notice requested in quiet hours — when they end."""
    if urgency is Urgency.URGENT or kind in IMMEDIATE_KINDS:
        return now
    tz = zone(timezone)
    local = now.astimezone(tz)
    if not in_quiet_hours(local.time().replace(tzinfo=None), quiet_start, quiet_end):
        return now
    end_today = datetime.combine(local.date(), quiet_end, tzinfo=tz)
    end = end_today if end_today > local else datetime.combine(local.date() + timedelta(days=1), quiet_end, tzinfo=tz)
    return end.astimezone(UTC)


@dataclass(frozen=True)
class NoticeRetrySchedule:
    """A notice's stored retry schedule: temporary failures retry with capped exponential backoff and jitter
    (``shared.backoff``), for a bounded time and number of tries."""

    base_seconds: float = 60.0
    max_delay_seconds: float = 3600.0
    window_seconds: float = 24 * 3600.0
    max_attempts: int = 30

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """Seconds before try ``failures + 1``: ``base * 2**(failures-1)``, capped, jittered to [ceiling/2, ceiling]."""
        return Backoff(initial=self.base_seconds, maximum=self.max_delay_seconds).delay(failures, rng)

    def next_try(
        self, now: datetime, *, failures: int, first_attempt_at: datetime, rng: random.Random | None = None
    ) -> datetime | None:
        """When to try again after ``failures`` temporary failures in a row, or None: give up and park it."""
        if failures >= self.max_attempts:
            return None
        when = now + timedelta(seconds=self.delay(failures, rng))
        if when > first_attempt_at + timedelta(seconds=self.window_seconds):
            return None
        return when


class RepeatPattern(BaseModel):
    """How a notice of one event class is sent again on one channel until the victim acknowledges it."""

    model_config = ConfigDict(frozen=True)

    interval_seconds: float | None = Field(default=None, gt=0, description="Between repeats; none: sent once.")
    window_seconds: float = Field(default=24 * 3600.0, gt=0, description="Repeats end this long after the first.")
    unconfirmed_interval_seconds: float | None = Field(
        default=None, gt=0, description="Between calls after a machine or an answer without the PIN (voice)."
    )
    failures_wait_for_repeat: bool = Field(
        default=False, description="A busy line or no answer is tried again at the next repeat, not sooner (voice)."
    )

    @property
    def repeats(self) -> bool:
        return self.interval_seconds is not None


SENT_ONCE = RepeatPattern()


class RepeatPatterns(BaseModel):
    """The calling pattern per event class and channel; a pair without one repeats urgent notices by ``urgent``.

    Notices a person asked for just now (a code, "your settings changed") are sent once whatever their
    urgency: their urgency only says they may not wait for morning.
    """

    model_config = ConfigDict(frozen=True)

    urgent: RepeatPattern
    by_class: dict[Urgency, dict[Channel, RepeatPattern]] = Field(default_factory=dict)

    def of(self, kind: NotificationKind, urgency: Urgency, channel: Channel) -> RepeatPattern:
        if kind in IMMEDIATE_KINDS:
            return SENT_ONCE
        configured = self.by_class.get(urgency, {}).get(channel)
        if configured is not None:
            return configured
        return self.urgent if urgency is Urgency.URGENT else SENT_ONCE


def next_repeat_at(now: datetime, *, repeat_until: datetime | None, interval_seconds: float) -> datetime | None:
    """The next repeat of an unacknowledged urgent notice, or None once the repeat window is over."""
    if repeat_until is None:
        return None
    when = now + timedelta(seconds=interval_seconds)
    return when if when <= repeat_until else None


def is_progress(current: DeliveryStatus, new: DeliveryStatus) -> bool:
    """Receipts arrive out of order (a late 'sent' after 'delivered'); only forward moves are applied."""
    return _RANK[new] > _RANK[current]


@dataclass(frozen=True)
class Receipt:
    """What a provider's status report means for us."""

    status: DeliveryStatus
    error_code: str | None = None
    disable: DisableReason | None = None
    unconfirmed: bool = False
    """Reached a machine, or a person who did not confirm: the next call waits the pattern's unconfirmed interval."""


def attempt_reference(notification_id: str, number: int) -> str:
    """The attempt id: the tag of its status callbacks (and the idempotency key of a provider that has one)."""
    return f"{notification_id}.a{number}"


# Why a waiting notice is not sent after all (the ``error_code`` of its final permanent-failure status).
STOPPED_BY_SUBSCRIBER = "stopped-by-subscriber"
SUBSCRIPTION_CANCELLED = "subscription-cancelled"
SUBSCRIPTION_NOT_ACTIVE = "subscription-not-active"
CONTACT_REMOVED = "contact-removed"
CONTACT_UNVERIFIED = "contact-unverified"
SUBJECT_WAS_SEALED = "subject-sealed"
STOPPED_BY_OPERATOR = "stopped-by-operator"
# Notices that exist to make a pending subscription's contact usable: sent before it is verified or active.
PRE_ACTIVATION_KINDS: frozenset[NotificationKind] = frozenset({NotificationKind.VERIFICATION})


@dataclass(frozen=True)
class ContactGate:
    """What delivery knows of one channel's contact from the subscription's latest state."""

    active: bool
    verified: bool
    masked: str


@dataclass(frozen=True)
class SubscriptionGate:
    """The latest ``subscription.state.v1`` of a subscription, reduced to what decides whether a notice may go."""

    status: str
    version: int
    contacts: dict[Channel, ContactGate]


def send_blocked_reason(
    gate: SubscriptionGate | None, *, kind: NotificationKind, channel: Channel, contact_masked: str
) -> str | None:
    """Why a notice must not be sent (checked before every attempt), or None: send it.

    Without any state for the subscription (the topic was compacted before delivery started, or the state is still
    in flight) the notice goes out: matching only asks for notices to active, verified contacts. A contact that
    STOPped (or unsubscribed, or bounced) never gets anything, not even a verification code; a cancelled
    subscription gets nothing. Verification codes are exempt from "active and verified" only.
    """
    if gate is None:
        return None
    contact = gate.contacts.get(channel)
    pre_activation = kind in PRE_ACTIVATION_KINDS
    # "Your notices were cancelled" must reach a cancelled subscription's verified contacts.
    farewell = kind is NotificationKind.SUBSCRIPTION_CHANGED
    rules = (
        (contact is not None and not contact.active, STOPPED_BY_SUBSCRIBER),
        (gate.status == "cancelled" and not farewell, SUBSCRIPTION_CANCELLED),
        (contact is None or contact.masked != contact_masked, CONTACT_REMOVED),
        (not pre_activation and not farewell and gate.status != "active", SUBSCRIPTION_NOT_ACTIVE),
        (not pre_activation and contact is not None and not contact.verified, CONTACT_UNVERIFIED),
    )
    return next((reason for broken, reason in rules if broken), None)
