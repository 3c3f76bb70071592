"""A subscription and every change it can go through; each change bumps the version consumers order by."""

from __future__ import annotations

import secrets
import uuid
import zoneinfo
from collections.abc import Callable
from datetime import datetime, time
from functools import cache
from typing import Literal

from pydantic import BaseModel, ConfigDict

from services.subscription.domain.errors import (
    CancelledError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    ProblemCode,
)
from shared.events import ContactPointState, SubjectIdentifier, SubscriptionState
from shared.vocabulary import Channel, CustodyStatus, Language

STATE_EVENT_NAMESPACE = uuid.UUID("5c3e2a71-9d0b-4f8e-8c6a-1e2f3a4b5c6d")
ALL_EVENT_TYPES: tuple[CustodyStatus, ...] = tuple(CustodyStatus)

DisabledReason = Literal["opted_out", "hard_bounce", "unsubscribed"]
SubscriptionStatus = Literal["pending", "active", "cancelled"]


@cache
def _known_timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def validate_timezone(name: str) -> str:
    if name not in _known_timezones():
        raise InvalidRequestError(
            f"unknown time zone {name[:64]!r}; use an IANA name such as America/Chicago",
            code=ProblemCode.UNKNOWN_TIMEZONE,
        )
    return name


def normalise_event_types(event_types: list[CustodyStatus] | None) -> list[CustodyStatus]:
    """None means all; an empty list is refused (a subscription that wants nothing is a cancellation)."""
    if event_types is None:
        return list(ALL_EVENT_TYPES)
    if not event_types:
        raise InvalidRequestError(
            "choose at least one kind of event, or leave event_types out to get all of them",
            code=ProblemCode.NO_EVENT_TYPES,
        )
    chosen = set(event_types)
    return [status for status in ALL_EVENT_TYPES if status in chosen]


class Contact(BaseModel):
    model_config = ConfigDict(frozen=True)

    channel: Channel
    ciphertext: str
    masked: str
    blind_index: str
    verified: bool = False
    active: bool = True
    disabled_reason: DisabledReason | None = None
    pin_hash: str | None = None
    """Voice only: the keyed hash of the PIN that confirms a call (``shared.pin``)."""

    def state(self) -> ContactPointState:
        return ContactPointState(
            channel=self.channel,
            ciphertext=self.ciphertext,
            masked=self.masked,
            verified=self.verified,
            active=self.active,
            pin_hash=self.pin_hash,
        )


class Subscription(BaseModel):
    model_config = ConfigDict(frozen=True)

    subscription_id: str
    agency_id: str
    identifier: SubjectIdentifier
    status: SubscriptionStatus
    contacts: tuple[Contact, ...]
    language: Language
    timezone: str
    event_types: tuple[CustodyStatus, ...]
    quiet_hours_start: time
    quiet_hours_end: time
    manage_nonce: str
    version: int
    created_at: datetime
    updated_at: datetime

    def contact(self, channel: Channel) -> Contact:
        for contact in self.contacts:
            if contact.channel is channel:
                return contact
        raise NotFoundError(f"this subscription has no {channel.value} contact")

    def has(self, channel: Channel) -> bool:
        return any(contact.channel is channel for contact in self.contacts)

    def state_event_id(self) -> str:
        """Deterministic per version: a retried transaction cannot publish one version twice."""
        return str(uuid.uuid5(STATE_EVENT_NAMESPACE, f"{self.subscription_id}:{self.version}"))

    def to_state(
        self, *, manage_url_ciphertext: str | None, unsubscribe_url_ciphertext: str | None
    ) -> SubscriptionState:
        return SubscriptionState(
            subscription_id=self.subscription_id,
            agency_id=self.agency_id,
            identifier=self.identifier,
            status=self.status,
            contacts=[contact.state() for contact in self.contacts],
            language=self.language,
            timezone=self.timezone,
            event_types=list(self.event_types),
            quiet_hours_start=self.quiet_hours_start,
            quiet_hours_end=self.quiet_hours_end,
            manage_url_ciphertext=manage_url_ciphertext,
            unsubscribe_url_ciphertext=unsubscribe_url_ciphertext if self.has(Channel.EMAIL) else None,
            version=self.version,
            updated_at=self.updated_at,
        )


def new_subscription(
    *,
    subscription_id: str,
    agency_id: str,
    identifier: SubjectIdentifier,
    contacts: tuple[Contact, ...],
    language: Language,
    timezone: str,
    event_types: tuple[CustodyStatus, ...],
    quiet_hours: tuple[time, time],
    now: datetime,
    status: SubscriptionStatus = "pending",
) -> Subscription:
    """Version 1 of a subscription, with the nonce its manage and unsubscribe links are made with."""
    return Subscription(
        subscription_id=subscription_id,
        agency_id=agency_id,
        identifier=identifier,
        status=status,
        contacts=contacts,
        language=language,
        timezone=timezone,
        event_types=event_types,
        quiet_hours_start=quiet_hours[0],
        quiet_hours_end=quiet_hours[1],
        manage_nonce=secrets.token_urlsafe(16),
        version=1,
        created_at=now,
        updated_at=now,
    )


def _changed(subscription: Subscription, now: datetime, **update: object) -> Subscription:
    return subscription.model_copy(update={**update, "version": subscription.version + 1, "updated_at": now})


def _with_contact(subscription: Subscription, replacement: Contact) -> tuple[Contact, ...]:
    return tuple(replacement if c.channel is replacement.channel else c for c in subscription.contacts)


def require_open(subscription: Subscription) -> None:
    if subscription.status == "cancelled":
        raise CancelledError("this subscription was cancelled; subscribe again to receive notices")


def verified_through_sms(subscription: Subscription, contact: Contact) -> bool:
    """A number for calls that is also the subscription's SMS number is verified by the SMS code (the text proves
    the number as well as a call would), never by a call of its own."""
    return contact.channel is Channel.VOICE and any(
        other.channel is Channel.SMS and other.blind_index == contact.blind_index for other in subscription.contacts
    )


def code_channel(subscription: Subscription, channel: Channel) -> Channel:
    """The contact whose code verifies ``channel``'s (:func:`verified_through_sms`)."""
    if subscription.has(channel) and verified_through_sms(subscription, subscription.contact(channel)):
        return Channel.SMS
    return channel


def mark_verified(subscription: Subscription, channel: Channel, now: datetime) -> Subscription:
    """``channel``'s code was right: that contact is verified, and with an SMS code the same number's calls too."""
    require_open(subscription)
    if subscription.contact(channel).verified:
        raise ConflictError(f"the {channel.value} contact is already verified")
    contacts = tuple(
        contact.model_copy(update={"verified": True})
        if contact.channel is channel or (channel is Channel.SMS and verified_through_sms(subscription, contact))
        else contact
        for contact in subscription.contacts
    )
    return _changed(subscription, now, contacts=contacts, status="active")


def disable_contact(
    subscription: Subscription, channel: Channel, reason: DisabledReason, now: datetime
) -> Subscription | None:
    """Stop using one contact point; None when nothing changes (already off for this reason)."""
    if not subscription.has(channel):
        return None
    contact = subscription.contact(channel)
    if not contact.active and contact.disabled_reason == reason:
        return None
    replacement = contact.model_copy(update={"active": False, "disabled_reason": reason})
    return _changed(subscription, now, contacts=_with_contact(subscription, replacement))


def stop_phone(subscription: Subscription, blind_index: str, now: datetime) -> Subscription | None:
    """STOP texted from a phone ends what goes to that number: its texts and its calls; None when nothing changes."""
    stopped: dict[Channel, Contact] = {
        contact.channel: contact.model_copy(update={"active": False, "disabled_reason": "opted_out"})
        for contact in subscription.contacts
        if contact.channel in (Channel.SMS, Channel.VOICE)
        and contact.blind_index == blind_index
        and (contact.active or contact.disabled_reason != "opted_out")
    }
    if not stopped:
        return None
    return _changed(subscription, now, contacts=tuple(stopped.get(c.channel, c) for c in subscription.contacts))


def resume_phone(subscription: Subscription, blind_index: str, now: datetime) -> Subscription | None:
    """START texted from a phone undoes its STOP, for its texts and its calls, and only STOP: a bounced or
    unsubscribed contact stays off; None when nothing changes."""
    if subscription.status == "cancelled":
        return None
    resumed: dict[Channel, Contact] = {
        contact.channel: contact.model_copy(update={"active": True, "disabled_reason": None})
        for contact in subscription.contacts
        if contact.channel in (Channel.SMS, Channel.VOICE)
        and contact.blind_index == blind_index
        and not contact.active
        and contact.disabled_reason == "opted_out"
    }
    if not resumed:
        return None
    return _changed(subscription, now, contacts=tuple(resumed.get(c.channel, c) for c in subscription.contacts))


def unsubscribe(subscription: Subscription, channel: Channel, now: datetime) -> Subscription | None:
    """Unsubscribing ends one channel (email's one-click link, calls stopped on the hotline); with no other working
    contact left, the subscription ends."""
    if subscription.status == "cancelled":
        return None
    changed = disable_contact(subscription, channel, "unsubscribed", now)
    if changed is None:
        return None
    if not any(contact.active for contact in changed.contacts):
        return changed.model_copy(update={"status": "cancelled"})
    return changed


def cancel(subscription: Subscription, now: datetime) -> Subscription | None:
    if subscription.status == "cancelled":
        return None
    return _changed(subscription, now, status="cancelled")


def change_preferences(
    subscription: Subscription,
    now: datetime,
    *,
    language: Language | None = None,
    timezone: str | None = None,
    event_types: list[CustodyStatus] | None = None,
    quiet_hours: tuple[time, time] | None = None,
) -> Subscription | None:
    require_open(subscription)
    update: dict[str, object] = {}
    if language is not None and language is not subscription.language:
        update["language"] = language
    if timezone is not None and validate_timezone(timezone) != subscription.timezone:
        update["timezone"] = timezone
    if event_types is not None:
        chosen = tuple(normalise_event_types(event_types))
        if chosen != subscription.event_types:
            update["event_types"] = chosen
    if quiet_hours is not None and quiet_hours != (subscription.quiet_hours_start, subscription.quiet_hours_end):
        update["quiet_hours_start"], update["quiet_hours_end"] = quiet_hours
    if not update:
        return None
    return _changed(subscription, now, **update)


def reencrypted(subscription: Subscription, rotate: Callable[[str], str], now: datetime) -> Subscription:
    """The same subscription with its contact ciphertext re-encrypted under the newest key (a new version, so the
    compacted topic soon holds only ciphertext the newest key made)."""
    contacts = tuple(c.model_copy(update={"ciphertext": rotate(c.ciphertext)}) for c in subscription.contacts)
    return _changed(subscription, now, contacts=contacts)


def add_contact(subscription: Subscription, contact: Contact, now: datetime) -> Subscription:
    """A new, unverified contact point: it gets nothing but its code until it is verified. A number for calls that
    is the subscription's verified SMS number is verified already."""
    require_open(subscription)
    if subscription.has(contact.channel):
        raise ConflictError(f"this subscription already has a {contact.channel.value} contact; remove it first")
    sms_verified = subscription.has(Channel.SMS) and subscription.contact(Channel.SMS).verified
    if sms_verified and verified_through_sms(subscription, contact):
        contact = contact.model_copy(update={"verified": True})
    return _changed(subscription, now, contacts=(*subscription.contacts, contact))


def remove_contact(subscription: Subscription, channel: Channel, now: datetime) -> Subscription:
    """Remove one contact point; refused when no other verified, working one would be left to send notices to."""
    require_open(subscription)
    subscription.contact(channel)
    remaining = tuple(c for c in subscription.contacts if c.channel is not channel)
    if not any(c.verified and c.active for c in remaining):
        raise ConflictError("this is your only working contact: add and confirm another one first, or cancel")
    return _changed(subscription, now, contacts=remaining)


def renew_link(subscription: Subscription, nonce: str, now: datetime) -> Subscription:
    """A new manage-link nonce: every link made with the old one (manage, unsubscribe) stops working."""
    require_open(subscription)
    return _changed(subscription, now, manage_nonce=nonce)
