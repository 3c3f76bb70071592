"""The payload of every event, and the registry of event types (the envelope is :mod:`shared.envelope`).

Every event type is versioned in its name (``...v1``); an incompatible change is a new type on a new topic, so a
consumer never meets a "newer version" of a type on a topic it reads (see :mod:`shared.kafka.consumer` for what
happens to a type a topic does not carry). Contact points travel only as ciphertext (see :mod:`shared.crypto`) plus
a masked form for display.
"""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.vocabulary import (
    Channel,
    ChargeSeverity,
    ContactRole,
    CustodyStatus,
    IdentifierKind,
    ImmigrationStage,
    Language,
    ReferralCategory,
    ReleaseReason,
    Urgency,
)

EVENT_TYPE_PREFIX = "org.custodywatch."


class Payload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SubjectIdentifier(Payload):
    kind: IdentifierKind
    value: str = Field(min_length=1, max_length=64)


class Charge(Payload):
    description: str = Field(min_length=1, max_length=300)
    statute: str | None = Field(default=None, max_length=100)
    severity: ChargeSeverity | None = None


class CaseInformation(Payload):
    """What an agency chooses to share about a case: shown only to its verified subscribers, never in the public
    lookup, never for a sealed subject. Every field is optional."""

    charges: list[Charge] = Field(default_factory=list, max_length=50)
    next_court_at: datetime | None = None
    court_name: str | None = Field(default=None, max_length=200)
    scheduled_release_at: datetime | None = Field(default=None, description="The projected or scheduled release.")
    immigration_stage: ImmigrationStage | None = None
    bond_amount: Decimal | None = Field(default=None, ge=0, max_digits=12, decimal_places=2)
    hold_reason: str | None = Field(default=None, max_length=200, description="For example an immigration detainer.")
    victim_contact_role: ContactRole | None = Field(
        default=None, description="Which of the agency's contacts is assigned to this case."
    )


class CustodyStatusChanged(Payload):
    """Ingest saw a real change of a subject's custody status (never a repeat, never a stale record)."""

    agency_id: str
    subject_id: str = Field(description="Ingest's stable id for the subject at this agency.")
    identifiers: list[SubjectIdentifier] = Field(min_length=1)
    display_name: str | None = None
    date_of_birth: date | None = Field(
        default=None,
        description="Where the agency shares it: a victim without a number may find the person by last name and "
        "date of birth. Never shown to anyone.",
    )
    facility: str | None = None
    status: CustodyStatus
    previous_status: CustodyStatus | None = None
    release_reason: ReleaseReason | None = None
    transfer_destination: str | None = None
    court_date: datetime | None = None
    effective_at: datetime
    sequence: int | None = Field(
        default=None, description="The agency's order of records with the same effective_at (higher is newer)."
    )
    agency_record_id: str
    feed_batch_id: str = Field(description="The raw batch or file that carried the record, for tracing.")
    origin: Literal["feed", "operator_override"] = "feed"
    received_at: datetime
    case: CaseInformation | None = Field(default=None, description="What the agency shares about the case.")
    case_information_only: bool = Field(
        default=False,
        description="The status is the one already known; only the case information changed (no status notice).",
    )
    transferred_to_agency_id: str | None = Field(
        default=None, description="A transfer to another participating agency: its subscribers follow the person."
    )


class SubjectSealed(Payload):
    """An agency sealed a subject: from now on no event and no status disclosure for it."""

    agency_id: str
    subject_id: str
    identifiers: list[SubjectIdentifier] = Field(min_length=1)
    sealed_at: datetime


class AgencyContact(Payload):
    role: ContactRole
    name: str = Field(min_length=1, max_length=200)
    phone: str | None = Field(default=None, max_length=32)
    email: str | None = Field(default=None, max_length=254)
    hours: str | None = Field(default=None, max_length=200)
    languages: list[Language] = Field(default_factory=list)


class Referral(Payload):
    name: str = Field(min_length=1, max_length=200)
    category: ReferralCategory
    phone: str | None = Field(default=None, max_length=32)
    url: str | None = Field(default=None, max_length=500)
    languages: list[Language] = Field(default_factory=list)
    hours: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=500)


class AgencyResources(Payload):
    """Who a victim of this agency's cases can call, and who can refer them to other services."""

    contacts: list[AgencyContact] = Field(default_factory=list, max_length=20)
    referrals: list[Referral] = Field(default_factory=list, max_length=50)

    @property
    def hotline(self) -> AgencyContact | None:
        return next((contact for contact in self.contacts if contact.role == ContactRole.HOTLINE), None)


class ReminderPolicy(Payload):
    """When an agency's subscribers are reminded of a scheduled release and a court date."""

    release_days_before: list[int] = Field(default=[14, 1], max_length=5, description="Whole days before.")
    release_morning_of: bool = Field(default=True, description="Also on the morning of the release day.")
    morning_hour: int = Field(default=8, ge=0, le=23, description="What 'morning' means, in the agency's zone.")
    court_days_before: list[int] = Field(default=[1], max_length=5)


class AgencyProfile(Payload):
    """An agency's public profile, as the notices and the subscription form need it (compacted by agency)."""

    agency_id: str
    name: str
    timezone: str
    contact_phone: str | None = None
    victim_services_phone: str | None = None
    victim_services_url: str | None = None
    expected_feed_interval_minutes: int = 60
    notices_paused: bool = False
    active: bool = True
    public_name_search: bool = Field(
        default=False, description="Victims may search this agency's people by name (never sealed ones)."
    )
    resources: AgencyResources = Field(default_factory=AgencyResources)
    reminders: ReminderPolicy = Field(default_factory=ReminderPolicy)
    updated_at: datetime


class ContactPointState(Payload):
    channel: Channel
    ciphertext: str
    masked: str
    verified: bool
    active: bool = Field(description="False after STOP, an opt-out or a hard bounce.")
    pin_hash: str | None = Field(
        default=None, description="Voice only: keyed hash of the PIN that confirms a call (shared.pin)."
    )


class SubscriptionState(Payload):
    """The whole current state of one subscription; published on a compacted topic keyed by its id."""

    subscription_id: str
    agency_id: str
    identifier: SubjectIdentifier
    status: Literal["pending", "active", "cancelled"]
    contacts: list[ContactPointState]
    language: Language
    timezone: str
    event_types: list[CustodyStatus]
    quiet_hours_start: time = time(21, 0)
    quiet_hours_end: time = time(7, 0)
    manage_url_ciphertext: str | None = None
    unsubscribe_url_ciphertext: str | None = Field(
        default=None, description="Encrypted RFC 8058 one-click unsubscribe URL for the email contact."
    )
    version: int = Field(ge=1, description="Grows with every change; consumers ignore older versions.")
    updated_at: datetime


class NotificationKind(StrEnum):
    STATUS_CHANGE = "status_change"
    CURRENT_STATUS = "current_status"
    VERIFICATION = "verification"
    FEED_SILENCE = "feed_silence"
    FEED_RESTORED = "feed_restored"
    SUBSCRIPTION_CHANGED = "subscription_changed"
    RELEASE_SCHEDULED = "release_scheduled"
    RELEASE_REMINDER = "release_reminder"
    COURT_DATE_SCHEDULED = "court_date_scheduled"
    COURT_REMINDER = "court_reminder"
    NOW_HELD_BY = "now_held_by"


class SubscriptionChange(StrEnum):
    """What a ``subscription_changed`` notice tells the subscriber was done with their subscription."""

    PREFERENCES = "preferences"
    CANCELLED = "cancelled"
    NEW_LINK = "new_link"
    CONTACT_ADDED = "contact_added"
    CONTACT_REMOVED = "contact_removed"


class CustodyFacts(Payload):
    """What a notice says about the custody change: enough to render it, nothing about other victims."""

    custody_event_id: str
    identifier: SubjectIdentifier
    display_name: str | None = None
    facility: str | None = None
    status: CustodyStatus
    previous_status: CustodyStatus | None = None
    release_reason: ReleaseReason | None = None
    transfer_destination: str | None = None
    court_date: datetime | None = None
    effective_at: datetime
    feed_received_at: datetime


class NotificationRequested(Payload):
    notification_id: str = Field(description="Deterministic: a redelivered cause yields the same id.")
    kind: NotificationKind
    subscription_id: str
    agency_id: str
    channel: Channel
    contact_ciphertext: str
    contact_masked: str
    language: Language
    timezone: str
    urgency: Urgency
    quiet_hours_start: time = time(21, 0)
    quiet_hours_end: time = time(7, 0)
    custody: CustodyFacts | None = None
    secret_ciphertext: str | None = Field(default=None, description="Verification code, encrypted like contact points.")
    manage_url_ciphertext: str | None = None
    verify_url_ciphertext: str | None = Field(default=None, description="Encrypted email verification link.")
    unsubscribe_url_ciphertext: str | None = Field(
        default=None, description="Encrypted RFC 8058 one-click unsubscribe URL (email notices)."
    )
    change: SubscriptionChange | None = Field(default=None, description="What a subscription_changed notice is about.")
    scheduled_for: datetime | None = Field(
        default=None, description="The release or court date a scheduled notice or reminder is about."
    )
    court_name: str | None = None
    now_held_by: str | None = Field(default=None, description="The agency now holding the person (now_held_by).")
    requested_at: datetime


class DeliveryStatus(StrEnum):
    """GOV.UK Notify's delivery statuses."""

    CREATED = "created"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    TEMPORARY_FAILURE = "temporary-failure"
    PERMANENT_FAILURE = "permanent-failure"
    TECHNICAL_FAILURE = "technical-failure"


class NotificationStatusChanged(Payload):
    notification_id: str
    subscription_id: str
    agency_id: str
    channel: Channel
    provider: str | None = None
    status: DeliveryStatus
    error_code: str | None = None
    attempt: int = 1
    at: datetime
    kind: NotificationKind | None = None
    urgency: Urgency | None = None
    contact_masked: str | None = None
    case: SubjectIdentifier | None = Field(default=None, description="The case the notice is about, if any.")
    custody_event_id: str | None = None
    feed_received_at: datetime | None = Field(default=None, description="For feed-to-delivery latency.")


class ContactPointDisabled(Payload):
    subscription_id: str
    channel: Channel
    reason: Literal["opted_out", "hard_bounce"]
    at: datetime


class NoticeAcknowledged(Payload):
    """A victim confirmed an urgent notice (link or SMS reply): its repeats stop."""

    subscription_id: str
    notification_id: str | None = Field(default=None, description="None: every open urgent notice of the subscription.")
    channel: Channel
    at: datetime


class FeedSilence(Payload):
    """An agency's feed has been silent for so long that its subscribers are told (``silent``), or it is back."""

    agency_id: str
    silence_id: str = Field(description="One per outage: the notices it causes are de-duplicated on it.")
    state: Literal["silent", "restored"]
    silent_since: datetime = Field(description="The last feed before the silence (or the agency's creation).")
    at: datetime


class OpsAlert(Payload):
    kind: Literal["feed_stale", "feed_recovered", "storm_held", "storm_released", "storm_discarded", "email_refused"]
    agency_id: str
    message: str
    at: datetime


EVENT_TYPES: dict[str, type[Payload]] = {
    f"{EVENT_TYPE_PREFIX}custody.status-changed.v1": CustodyStatusChanged,
    f"{EVENT_TYPE_PREFIX}custody.subject-sealed.v1": SubjectSealed,
    f"{EVENT_TYPE_PREFIX}agency.profile.v1": AgencyProfile,
    f"{EVENT_TYPE_PREFIX}subscription.state.v1": SubscriptionState,
    f"{EVENT_TYPE_PREFIX}notification.requested.v1": NotificationRequested,
    f"{EVENT_TYPE_PREFIX}notification.status-changed.v1": NotificationStatusChanged,
    f"{EVENT_TYPE_PREFIX}contact-point.disabled.v1": ContactPointDisabled,
    f"{EVENT_TYPE_PREFIX}notification.acknowledged.v1": NoticeAcknowledged,
    f"{EVENT_TYPE_PREFIX}ops.alert.v1": OpsAlert,
    f"{EVENT_TYPE_PREFIX}agency.feed-silence.v1": FeedSilence,
}
TYPE_OF: dict[type[Payload], str] = {model: name for name, model in EVENT_TYPES.items()}
