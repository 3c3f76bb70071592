"""Request and response bodies of the subscription API."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.subscription.domain.errors import InvalidContactError, ProblemCode, TooManyRequestsError
from services.subscription.domain.subscription import Subscription
from shared.vocabulary import Channel, CustodyStatus, IdentifierKind, Language

AGENCY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
NO_NUL_PATTERN = r"^[^\u0000]+$"


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IdentifierBody(Body):
    kind: IdentifierKind
    value: str = Field(
        min_length=1,
        max_length=64,
        description="As the agency writes it; spaces and case ignored.",
        json_schema_extra={"pattern": NO_NUL_PATTERN},  # PostgreSQL text cannot hold U+0000: a 400 otherwise
    )


class QuietHours(Body):
    start: time = Field(description="Local time from which informational notices wait (urgent ones never wait).")
    end: time


# What the published schema promises beyond what the model itself parses: the service checks each of these and
# answers a body that breaks one with a 422 naming the rule (see the route's responses), never with a 500.
PHONE_PATTERN = r"^\+?[0-9 ().-]{7,40}$"
TIMEZONE_PATTERN = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$"
PIN_PATTERN = r"^[0-9]{4}$"
CONTACT_FIELDS = ("sms", "email", "voice")


class SubscribeRequest(Body):
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [{"required": [name], "properties": {name: {"type": "string"}}} for name in CONTACT_FIELDS],
            "dependentSchemas": {
                one: {"required": [other], "properties": {other: {"type": "string"}}}
                for one, other in (("voice", "pin"), ("pin", "voice"))
            },
        }
    )

    agency_id: str = Field(min_length=1, max_length=64, pattern=AGENCY_PATTERN)
    identifier: IdentifierBody
    sms: str | None = Field(
        default=None,
        max_length=40,
        description="A mobile number that can receive texts; +country code if not US (else 422 invalid_contact).",
        json_schema_extra={"pattern": PHONE_PATTERN},
    )
    email: str | None = Field(
        default=None,
        max_length=254,
        description="An email address (422 invalid_contact if the address cannot be valid).",
        json_schema_extra={"format": "email"},
    )
    voice: str | None = Field(
        default=None,
        max_length=40,
        description="A number for calls (mobile or landline); needs a pin (else 422 invalid_contact).",
        json_schema_extra={"pattern": PHONE_PATTERN},
    )
    pin: str | None = Field(
        default=None,
        max_length=16,
        description="4 digits that confirm an urgent call; not the same digit four times, a run (1234, 9876), a "
        "repeated pair (1212, 1122) or a year (19xx, 20xx): 422 invalid_pin.",
        json_schema_extra={"pattern": PIN_PATTERN},
    )
    language: Language = Language.ENGLISH
    timezone: str = Field(
        min_length=1,
        max_length=64,
        description="IANA time zone, e.g. America/Chicago (422 unknown_timezone for a name the service does not know).",
        json_schema_extra={"pattern": TIMEZONE_PATTERN},
    )
    event_types: list[CustodyStatus] | None = Field(
        default=None, description="Leave out to get every event.", json_schema_extra={"minItems": 1}
    )
    quiet_hours: QuietHours | None = None


SUBSCRIBE_PROBLEMS: dict[int, list[str]] = {
    404: [ProblemCode.UNKNOWN_AGENCY],
    409: [ProblemCode.AGENCY_CLOSED],
    422: [
        InvalidContactError.code,
        ProblemCode.NO_CONTACT,
        ProblemCode.UNKNOWN_TIMEZONE,
        ProblemCode.NO_EVENT_TYPES,
        ProblemCode.PIN_WITHOUT_VOICE,
        ProblemCode.PIN_REQUIRED,
        ProblemCode.INVALID_PIN,
    ],
    429: [TooManyRequestsError.code],
}


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
    detail: str = Field(description="What went wrong, in words a person can act on.")
    code: str = Field(description="What went wrong, for programs: each route lists the codes it answers with.")


def problem_responses(
    codes: Mapping[int, Sequence[str]], *, media_type: str = "application/json"
) -> dict[int | str, Any]:
    """OpenAPI responses for the problems a route answers with, each status with its codes as an enum. A 422 also
    covers a body that breaks the published schema (FastAPI's validation error)."""
    responses: dict[int | str, Any] = {}
    for status, listed in codes.items():
        schema: dict[str, Any] = {
            "type": "object",
            "required": ["detail", "code"],
            "properties": {"detail": {"type": "string"}, "code": {"type": "string", "enum": list(listed)}},
        }
        if status == 422 and media_type == "application/json":
            schema = {"anyOf": [schema, {"$ref": "#/components/schemas/HTTPValidationError"}]}
        content = {media_type: {"schema": schema}} if media_type == "application/json" else {media_type: {}}
        responses[status] = {"description": ", ".join(listed), "content": content}
    return responses
