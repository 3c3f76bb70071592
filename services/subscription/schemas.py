"""Request and response bodies of the subscription API."""

from __future__ import annotations

from datetime import datetime, time

from pydantic import BaseModel, ConfigDict, Field

from services.subscription.domain.subscription import Subscription
from shared.vocabulary import Channel, CustodyStatus, IdentifierKind, Language

AGENCY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IdentifierBody(Body):
    kind: IdentifierKind
    value: str = Field(min_length=1, max_length=64, description="As the agency writes it; spaces and case ignored.")


class QuietHours(Body):
    start: time = Field(description="Local time from which informational notices wait (urgent ones never wait).")
    end: time


class SubscribeRequest(Body):
    agency_id: str = Field(min_length=1, max_length=64, pattern=AGENCY_PATTERN)
    identifier: IdentifierBody
    sms: str | None = Field(default=None, max_length=40, description="A mobile number; +country code if not US.")
    email: str | None = Field(default=None, max_length=254)
    voice: str | None = Field(
        default=None, max_length=40, description="A number for calls (mobile or landline); needs a pin."
    )
    pin: str | None = Field(
        default=None,
        max_length=16,
        description="4 digits that confirm an urgent call; not 0000, 1234 or another easy guess.",
    )
    language: Language = Language.ENGLISH
    timezone: str = Field(min_length=1, max_length=64, description="IANA time zone, e.g. America/Chicago.")
    event_types: list[CustodyStatus] | None = Field(default=None, description="Leave out to get every event.")
    quiet_hours: QuietHours | None = None


class VerifyRequest(Body):
    channel: Channel
    code: str = Field(min_length=1, max_length=20)


class VerifyLinkRequest(Body):
    token: str = Field(min_length=1, max_length=1024, description="The token of the emailed verification link.")


class ResendRequest(Body):
    channel: Channel


class PreferencesPatch(Body):
    language: Language | None = None
    timezone: str | None = Field(default=None, min_length=1, max_length=64)
    event_types: list[CustodyStatus] | None = None
    quiet_hours: QuietHours | None = None


class ContactView(BaseModel):
    channel: Channel
    masked: str
    verified: bool
    active: bool


class SubscriptionView(BaseModel):
    subscription_id: str
    status: str
    agency_id: str
    identifier: IdentifierBody
    language: Language
    timezone: str
    event_types: list[CustodyStatus]
    quiet_hours: QuietHours
    contacts: list[ContactView]

    @classmethod
    def of(cls, subscription: Subscription) -> SubscriptionView:
        return cls(
            subscription_id=subscription.subscription_id,
            status=subscription.status,
            agency_id=subscription.agency_id,
            identifier=IdentifierBody(kind=subscription.identifier.kind, value=subscription.identifier.value),
            language=subscription.language,
            timezone=subscription.timezone,
            event_types=list(subscription.event_types),
            quiet_hours=QuietHours(start=subscription.quiet_hours_start, end=subscription.quiet_hours_end),
            contacts=[
                ContactView(channel=c.channel, masked=c.masked, verified=c.verified, active=c.active)
                for c in subscription.contacts
            ],
        )


class CreatedView(SubscriptionView):
    manage_url: str = Field(description="Private: whoever holds it can see and change this subscription.")


class CustodyStatusView(BaseModel):
    agency_id: str
    identifier: IdentifierBody
    status: CustodyStatus
    effective_at: datetime
    facility: str | None


class PersonView(BaseModel):
    display_name: str
    status: CustodyStatus
    effective_at: datetime
    facility: str | None
    identifier: IdentifierBody = Field(description="The number to subscribe with.")


class PeopleView(BaseModel):
    people: list[PersonView] = Field(max_length=10)


class Problem(BaseModel):
    detail: str
