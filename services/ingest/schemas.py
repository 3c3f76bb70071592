"""Request and response models of the ingest HTTP API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, HttpUrl, model_validator

from services.ingest.domain import RecordResult, StatusMapping, parse_csv_columns
from shared.events import AgencyResources, ReminderPolicy, SubjectIdentifier
from shared.vocabulary import ContactRole, CustodyStatus, Language, ReferralCategory, ReleaseReason


def _known_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {name!r} (for example 'America/Chicago')") from None
    return name


def _csv_columns(columns: dict[str, str]) -> dict[str, str]:
    return parse_csv_columns(columns)


def _status_map(mapping: dict[str, StatusMapping]) -> dict[str, StatusMapping]:
    if not mapping:
        raise ValueError("a status map needs at least one code")
    return {code.strip().upper(): meaning for code, meaning in mapping.items()}


TimeZoneName = Annotated[str, AfterValidator(_known_zone)]
CsvColumns = Annotated[dict[str, str], AfterValidator(_csv_columns)]
StatusMapIn = Annotated[dict[str, StatusMapping], AfterValidator(_status_map)]
Phone = Annotated[str, Field(min_length=3, max_length=32, pattern=r"^\+?[0-9 ().-]+$")]


Email = Annotated[str, Field(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]


class ContactIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    role: ContactRole
    name: str = Field(min_length=1, max_length=200)
    phone: Phone | None = None
    email: Email | None = None
    hours: str | None = Field(default=None, max_length=200)
    languages: list[Language] = Field(default_factory=list)


class ReferralIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200)
    category: ReferralCategory
    phone: Phone | None = None
    url: HttpUrl | None = None
    languages: list[Language] = Field(default_factory=list)
    hours: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=500)


class ResourcesIn(BaseModel):
    """An agency's local contacts and referral services; at most one hotline (urgent notices name it)."""

    model_config = ConfigDict(extra="forbid")

    contacts: list[ContactIn] = Field(default_factory=list, max_length=20)
    referrals: list[ReferralIn] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _one_hotline(self) -> ResourcesIn:
        if sum(1 for contact in self.contacts if contact.role is ContactRole.HOTLINE) > 1:
            raise ValueError("give at most one contact with role 'hotline'")
        return self

    def published(self) -> AgencyResources:
        return AgencyResources.model_validate(self.model_dump(mode="json"))


class AgencyFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contact_phone: Phone | None = None
    victim_services_phone: Phone | None = None
    victim_services_url: HttpUrl | None = None
    status_map: StatusMapIn | None = Field(
        default=None, description="Agency status code -> canonical status (and release reason)."
    )
    csv_columns: CsvColumns | None = Field(default=None, description="Canonical CSV field -> the agency's header.")
    storm_window_minutes: int | None = Field(
        default=None, ge=1, le=1440, description="Storm guard: the window urgent changes are counted in (default 10)."
    )
    storm_population_share: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Storm guard: more urgent changes in the window than this share of the people in custody is a "
        "storm (default 0.1).",
    )
    storm_min_changes: int | None = Field(
        default=None, ge=1, le=1_000_000, description="Storm guard: never a storm at or below this many (default 50)."
    )
    storm_rate_multiple: float | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="Storm guard: a storm is also more than this multiple of the usual count per window, over the "
        "last 7 days (default 10).",
    )
    silence_notice_after_minutes: int | None = Field(
        default=None,
        ge=1,
        le=43_200,
        description="After this many minutes without a feed, subscribers of people in custody are told their "
        "status cannot be confirmed right now; null (the default) never tells them.",
    )
    public_name_search: bool | None = Field(
        default=None,
        description="Victims without a number may search by name the people this agency holds or released in the "
        "last 30 days (never a sealed one); off unless set.",
    )
    reminders: ReminderPolicy | None = Field(
        default=None, description="When subscribers are reminded of a scheduled release or court date."
    )


class AgencyCreate(AgencyFields):
    agency_id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$", description="Lower-case letters, digits, dashes.")
    name: str = Field(min_length=1, max_length=200)
    timezone: TimeZoneName
    expected_feed_interval_minutes: int = Field(default=60, ge=1, le=10_080)


class AgencyUpdate(AgencyFields):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    timezone: TimeZoneName | None = None
    expected_feed_interval_minutes: int | None = Field(default=None, ge=1, le=10_080)
    notices_paused: bool | None = None
    active: bool | None = None


class AgencyOut(BaseModel):
    agency_id: str
    name: str
    timezone: str
    contact_phone: str | None
    victim_services_phone: str | None
    victim_services_url: str | None
    expected_feed_interval_minutes: int
    notices_paused: bool
    active: bool
    status_map: dict[str, StatusMapping]
    csv_columns: dict[str, str]
    storm_window_minutes: int
    storm_population_share: float
    storm_min_changes: int
    storm_rate_multiple: float
    silence_notice_after_minutes: int | None
    public_name_search: bool
    resources: AgencyResources
    reminders: ReminderPolicy
    created_at: datetime
    updated_at: datetime


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str | None = Field(default=None, max_length=200)


class KeyCreated(BaseModel):
    key_id: str
    agency_id: str
    label: str | None
    created_at: datetime
    api_key: str = Field(description="Shown only now: store it in the agency's feed client.")


class KeyInfo(BaseModel):
    key_id: str
    label: str | None
    created_at: datetime
    revoked_at: datetime | None


class KeyRevoked(BaseModel):
    key_id: str
    agency_id: str
    revoked: bool


class RecordOutcomeOut(BaseModel):
    index: int = Field(description="Position in the batch (JSON) or data row number, header excluded (CSV).")
    record_id: str | None
    result: RecordResult
    reason: str | None = None
    event_id: str | None = Field(default=None, description="The custody.status-changed event, when one was emitted.")


class BatchResult(BaseModel):
    batch_id: str
    agency_id: str
    received_at: datetime
    summary: dict[str, int]
    results: list[RecordOutcomeOut]


class RowError(BaseModel):
    row: int
    record_id: str | None
    reason: str


class FileJob(BaseModel):
    job_id: str
    agency_id: str
    status: str = Field(description="receiving, pending, processing, processed or failed")
    received_at: datetime
    processed_at: datetime | None
    size_bytes: int
    rows_processed: int
    rows_accepted: int
    rows_rejected: int
    summary: dict[str, int]
    error: str | None
    errors: list[RowError]


class SealRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    identifiers: list[SubjectIdentifier] = Field(min_length=1, max_length=50)


class SealResult(BaseModel):
    subject_id: str
    sealed_at: datetime
    identifiers: list[SubjectIdentifier]


class FeedHealth(BaseModel):
    agency_id: str
    name: str
    last_feed_at: datetime | None
    expected_feed_interval_minutes: int
    stale: bool
    notices_paused: bool
    in_custody: int
    records_last_24h: dict[str, int]
    records_total: dict[str, int]


class HeldSample(BaseModel):
    agency_record_id: str
    status: CustodyStatus
    previous_status: CustodyStatus | None
    effective_at: datetime
    facility: str | None
    display_name: str | None


class StormHoldOut(BaseModel):
    hold_id: str
    agency_id: str
    state: Literal["holding", "released", "discarded"]
    opened_at: datetime
    trigger: str = Field(description="Why the feed was held, in plain words.")
    held_changes: int
    urgent_changes: int
    by_status: dict[str, int]
    samples: list[HeldSample] = Field(description="The first held records, in feed order.")
    decided_at: datetime | None
    decided_by: str | None
    decision_reason: str | None


Operator = Annotated[str, Field(min_length=1, max_length=100, description="Who decides (the operator's login).")]
Reason = Annotated[str, Field(min_length=1, max_length=500)]


class HoldRelease(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    operator: Operator


class HoldDiscard(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    operator: Operator
    reason: Reason = Field(description="Why the held changes are false (kept with the hold).")


class OverrideCreate(BaseModel):
    """A custody status set by hand while the feed is down; it notifies subscribers like a feed record."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    person_number: str | None = Field(default=None, max_length=64)
    booking_number: str | None = Field(default=None, max_length=64)
    case_numbers: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=50)
    status: CustodyStatus
    effective_at: datetime = Field(description="When the status took effect; with a time zone offset.")
    release_reason: ReleaseReason | None = None
    transfer_destination: str | None = Field(default=None, max_length=200)
    court_date: datetime | None = None
    facility: str | None = Field(default=None, max_length=200)
    name: str | None = Field(default=None, max_length=200)
    operator: Operator
    reason: Reason

    @model_validator(mode="after")
    def _complete(self) -> OverrideCreate:
        if not (self.person_number or self.booking_number or any(case.strip() for case in self.case_numbers)):
            raise ValueError("give a person_number, booking_number or case_numbers")
        for name, moment in (("effective_at", self.effective_at), ("court_date", self.court_date)):
            if moment is not None and moment.utcoffset() is None:
                raise ValueError(f"{name} needs a time zone offset")
        if self.effective_at > datetime.now(UTC) + timedelta(minutes=5):
            raise ValueError("effective_at is in the future")
        if self.status is CustodyStatus.COURT_DATE_SET and self.court_date is None:
            raise ValueError("court_date_set needs a court_date")
        if self.release_reason is not None and self.status is not CustodyStatus.RELEASED:
            raise ValueError("release_reason only goes with status released")
        return self


class OverrideOut(BaseModel):
    override_id: str
    agency_id: str
    subject_id: str
    result: Literal["accepted", "duplicate", "stale", "sealed"] = Field(
        description="accepted: a change, notices go out; duplicate: already that status; stale: older than the "
        "subject's newest record; sealed: the subject is sealed, nothing disclosed."
    )
    event_id: str | None
    status: CustodyStatus
    effective_at: datetime
    operator: str
    reason: str
    created_at: datetime
