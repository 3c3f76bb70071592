"""Request and response models of the ingest HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, HttpUrl

from services.ingest.domain import RecordResult, StatusMapping, parse_csv_columns
from shared.events import SubjectIdentifier


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


class AgencyFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contact_phone: Phone | None = None
    victim_services_phone: Phone | None = None
    victim_services_url: HttpUrl | None = None
    status_map: StatusMapIn | None = Field(
        default=None, description="Agency status code -> canonical status (and release reason)."
    )
    csv_columns: CsvColumns | None = Field(default=None, description="Canonical CSV field -> the agency's header.")


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
