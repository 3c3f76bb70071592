"""Custody records as agencies send them, validated and normalised to canonical terms (pure: no I/O).

Dates: an ``effective_at`` with an offset is taken as given; one without an offset is read in the agency's time
zone. A time more than the allowed skew in the future, or before 1900, is rejected.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cached_property
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema, field_validator, model_validator

from shared.events import CaseInformation, Charge, SubjectIdentifier
from shared.vocabulary import (
    ContactRole,
    CustodyStatus,
    IdentifierKind,
    ImmigrationStage,
    ReleaseReason,
    normalise_identifier,
)

EARLIEST_EFFECTIVE = datetime(1900, 1, 1, tzinfo=UTC)
MAX_IDENTIFIER_LENGTH = 64
NOT_BLANK: dict[str, Any] = {"pattern": r"\S"}
"""Published for fields whose surrounding whitespace is stripped before their minimum length is checked."""
BOND_AMOUNT_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "integer", "minimum": 0, "maximum": 9_999_999_999},
        {"type": "string", "pattern": r"^[0-9]{1,10}(\.[0-9]{1,2})?$"},
        {"type": "null"},
    ]
}
"""An amount as JSON can carry it exactly: whole units, or a decimal string with at most 2 decimal places."""

RECORD_RULES: tuple[str, ...] = (
    "record has no identifier",
    "unknown status code",
    "is before 1900",
    "is in the future",
    "is out of range",
    "but the record has no court_date",
    "transferred_to_agency_id only goes with a status that means transferred",
    "record_id repeated within this batch",
    "identifiers belong to different subjects",
)
"""Why a record valid by its published schema may still be rejected (each phrase appears in the reason): rules that
depend on the agency (its status map), on the time of the upload or on other records."""


class StatusMapping(BaseModel):
    """What one of an agency's own status codes means in canonical terms."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: CustodyStatus
    release_reason: ReleaseReason | None = None

    @model_validator(mode="after")
    def _reason_only_for_release(self) -> StatusMapping:
        if self.release_reason is not None and self.status is not CustodyStatus.RELEASED:
            raise ValueError("release_reason is only meaningful for status 'released'")
        return self


StatusMap = dict[str, StatusMapping]

# A new agency starts with the canonical names and a few common JMS codes; each agency sets its own map.
DEFAULT_STATUS_MAP: StatusMap = {
    **{status.value.upper(): StatusMapping(status=status) for status in CustodyStatus},
    "BOOKED": StatusMapping(status=CustodyStatus.IN_CUSTODY),
    "RELEASED_BOND": StatusMapping(status=CustodyStatus.RELEASED, release_reason=ReleaseReason.BOND),
    "RELEASED_OR": StatusMapping(status=CustodyStatus.RELEASED, release_reason=ReleaseReason.OWN_RECOGNISANCE),
    "RELEASED_SENTENCE_SERVED": StatusMapping(
        status=CustodyStatus.RELEASED, release_reason=ReleaseReason.SENTENCE_SERVED
    ),
    "RELEASED_PAROLE": StatusMapping(status=CustodyStatus.RELEASED, release_reason=ReleaseReason.PAROLE_SUPERVISION),
    "RELEASED_COURT_ORDER": StatusMapping(status=CustodyStatus.RELEASED, release_reason=ReleaseReason.COURT_ORDER),
}

CSV_FIELDS: tuple[str, ...] = (
    "record_id",
    "person_number",
    "booking_number",
    "case_numbers",
    "name",
    "date_of_birth",
    "facility",
    "status_code",
    "effective_at",
    "sequence",
    "transfer_destination",
    "court_date",
    "transferred_to_agency_id",
    "charges",
    "next_court_at",
    "court_name",
    "scheduled_release_at",
    "immigration_stage",
    "bond_amount",
    "hold_reason",
    "victim_contact_role",
)
REQUIRED_CSV_FIELDS: frozenset[str] = frozenset({"record_id", "status_code", "effective_at"})
DEFAULT_CSV_COLUMNS: dict[str, str] = {name: name for name in CSV_FIELDS}


def normalise_status_code(code: str) -> str:
    return code.strip().upper()


def parse_status_map(raw: Mapping[str, Any]) -> StatusMap:
    """Validate a status map (code -> {status, release_reason}); codes compare case-insensitively."""
    parsed: StatusMap = {}
    for code, meaning in raw.items():
        key = normalise_status_code(code)
        if not key:
            raise ValueError("status codes must not be empty")
        parsed[key] = meaning if isinstance(meaning, StatusMapping) else StatusMapping.model_validate(meaning)
    if not parsed:
        raise ValueError("a status map needs at least one code")
    return parsed


def parse_csv_columns(raw: Mapping[str, str]) -> dict[str, str]:
    """Validate a CSV column mapping (canonical field -> the agency's column header), completing it from defaults."""
    unknown = sorted(set(raw) - set(CSV_FIELDS))
    if unknown:
        raise ValueError(f"unknown CSV fields {unknown}; known fields are {list(CSV_FIELDS)}")
    columns = DEFAULT_CSV_COLUMNS | {name: header.strip() for name, header in raw.items()}
    headers = list(columns.values())
    if any(not header for header in headers) or len(set(headers)) != len(headers):
        raise ValueError("each CSV field needs its own non-empty column header")
    return columns


class RecordIn(BaseModel):
    """One custody record as an agency sends it (JSON object or CSV row)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    record_id: str = Field(
        min_length=1,
        max_length=128,
        json_schema_extra=NOT_BLANK,
        description="The agency's own id of this record; unique per agency.",
    )
    person_number: str | None = Field(default=None, max_length=MAX_IDENTIFIER_LENGTH, description="Person/A-number.")
    booking_number: str | None = Field(default=None, max_length=MAX_IDENTIFIER_LENGTH)
    case_numbers: list[Annotated[str, Field(max_length=MAX_IDENTIFIER_LENGTH)]] = Field(
        default_factory=list, max_length=50
    )
    name: str | None = Field(default=None, max_length=200, description="Name for display.")
    date_of_birth: date | None = Field(
        default=None,
        description="Where the agency shares it: lets a victim without a number find the person by last name and "
        "date of birth (only where the agency allows a search by name). Never shown.",
    )
    facility: str | None = Field(default=None, max_length=200)
    status_code: str = Field(
        min_length=1,
        max_length=64,
        json_schema_extra=NOT_BLANK,
        description="The agency's code, mapped by its status map (a code not in the map is rejected).",
    )
    effective_at: datetime = Field(
        description="When the status took effect. Without an offset it is read in the agency's time zone; "
        "more than 5 minutes in the future or before 1900 is rejected."
    )
    sequence: int | None = Field(
        default=None, ge=0, le=2**62, description="Orders records with the same effective_at (higher is newer)."
    )
    transfer_destination: str | None = Field(default=None, max_length=200, description="For transfers.")
    court_date: datetime | None = Field(default=None, description="Required when the code means court_date_set.")
    transferred_to_agency_id: str | None = Field(
        default=None,
        max_length=64,
        description="For transfers to another participating agency: its id. Its booking of the same person "
        "(person/A-number) within 30 days carries the victims' subscriptions over.",
    )
    charges: list[Charge] = Field(
        default_factory=list,
        max_length=50,
        description="Shared with verified subscribers only. In CSV: 'description|statute|severity' per charge, "
        "charges separated by ';' (statute and severity may be empty).",
    )
    next_court_at: datetime | None = Field(default=None, description="The next court date; offset or agency zone.")
    court_name: str | None = Field(default=None, max_length=200)
    scheduled_release_at: datetime | None = Field(
        default=None, description="The projected or scheduled release; subscribers are told and reminded."
    )
    immigration_stage: ImmigrationStage | None = None
    bond_amount: Annotated[Decimal | None, WithJsonSchema(BOND_AMOUNT_SCHEMA)] = Field(
        default=None, ge=0, max_digits=12, decimal_places=2, description="At most 10 digits and 2 decimal places."
    )
    hold_reason: str | None = Field(default=None, max_length=200, description="For example an immigration detainer.")
    victim_contact_role: ContactRole | None = Field(
        default=None, description="Which of the agency's contacts is assigned to this case."
    )

    @field_validator(
        "person_number",
        "booking_number",
        "name",
        "facility",
        "transfer_destination",
        "transferred_to_agency_id",
        "court_name",
        "hold_reason",
        mode="after",
    )
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("charges", mode="before")
    @classmethod
    def _charges_from_csv(cls, value: Any) -> Any:
        return parse_csv_charges(value) if isinstance(value, str) else value

    @field_validator("case_numbers", mode="after")
    @classmethod
    def _case_numbers(cls, values: list[str]) -> list[str]:
        return [value for value in values if value]


def parse_csv_charges(cell: str) -> list[dict[str, str | None]]:
    """``description|statute|severity`` per charge, charges separated by ``;``; empty parts are absent."""
    charges: list[dict[str, str | None]] = []
    for entry in cell.split(";"):
        if not entry.strip():
            continue
        parts = [part.strip() or None for part in entry.split("|")]
        if len(parts) > 3:
            raise ValueError(f"a charge has at most three parts (description|statute|severity): {entry.strip()!r}")
        description, statute, severity = [*parts, None, None][:3]
        charges.append({"description": description, "statute": statute, "severity": severity})
    return charges


@dataclass(frozen=True)
class Identifier:
    kind: IdentifierKind
    value: str

    @cached_property
    def key(self) -> tuple[str, str]:
        """Computed once: a large feed looks every identifier up several times."""
        return (self.kind.value, normalise_identifier(self.value))


@dataclass(frozen=True)
class CustodyRecord:
    """A valid, normalised record: canonical status, aware UTC times, identifiers."""

    record_id: str
    identifiers: tuple[Identifier, ...]
    status_code: str
    status: CustodyStatus
    release_reason: ReleaseReason | None
    effective_at: datetime
    sequence: int | None
    display_name: str | None = None
    date_of_birth: date | None = None
    facility: str | None = None
    transfer_destination: str | None = None
    court_date: datetime | None = None
    case: CaseInformation | None = None
    transferred_to_agency_id: str | None = None


class RecordRejectedError(ValueError):
    """The record cannot be applied; the message says why, in words an agency's developer can act on."""

    def __init__(self, reason: str, record_id: str | None = None) -> None:
        super().__init__(reason)
        self.record_id = record_id


def _aware(value: datetime, zone: ZoneInfo, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        value = value.replace(tzinfo=zone)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise RecordRejectedError(
            f"{name} {value.isoformat()} is out of range: in UTC it falls outside years 1-9999"
        ) from None


def validation_reason(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in issue['loc']) or 'record'}: {issue['msg']}" for issue in error.errors()
    )


def normalise_record(
    raw: Any,
    *,
    status_map: Mapping[str, StatusMapping],
    timezone: ZoneInfo,
    now: datetime,
    max_skew: timedelta,
) -> CustodyRecord:
    """Validate one raw record and map it to canonical terms, or raise :class:`RecordRejectedError` saying why."""
    if not isinstance(raw, Mapping):
        raise RecordRejectedError(f"record must be a JSON object, not {type(raw).__name__}")
    raw_id = raw.get("record_id")
    try:
        return _normalise(raw, status_map=status_map, timezone=timezone, now=now, max_skew=max_skew)
    except RecordRejectedError as rejected:
        rejected.record_id = raw_id if isinstance(raw_id, str) and raw_id.strip() else None
        raise


def _normalise(
    raw: Mapping[str, Any],
    *,
    status_map: Mapping[str, StatusMapping],
    timezone: ZoneInfo,
    now: datetime,
    max_skew: timedelta,
) -> CustodyRecord:
    try:
        record = RecordIn.model_validate(raw)
    except ValidationError as error:
        raise RecordRejectedError(validation_reason(error)) from None
    identifiers = [
        Identifier(kind, value)
        for kind, value in (
            (IdentifierKind.PERSON_NUMBER, record.person_number),
            (IdentifierKind.BOOKING_NUMBER, record.booking_number),
            *((IdentifierKind.CASE_NUMBER, case) for case in record.case_numbers),
        )
        if value
    ]
    if not identifiers:
        raise RecordRejectedError("record has no identifier: give a person_number, booking_number or case_numbers")
    unique_identifiers = tuple({identifier.key: identifier for identifier in identifiers}.values())
    mapping = status_map.get(normalise_status_code(record.status_code))
    if mapping is None:
        raise RecordRejectedError(f"unknown status code {record.status_code!r}: add it to the agency's status map")
    effective_at = _aware(record.effective_at, timezone, "effective_at")
    if effective_at < EARLIEST_EFFECTIVE:
        raise RecordRejectedError(f"effective_at {effective_at.isoformat()} is before 1900")
    if effective_at > now + max_skew:
        raise RecordRejectedError(
            f"effective_at {effective_at.isoformat()} is in the future (more than {int(max_skew.total_seconds())} s "
            "ahead of the server clock)"
        )
    court_date = _aware(record.court_date, timezone, "court_date") if record.court_date is not None else None
    if mapping.status is CustodyStatus.COURT_DATE_SET and court_date is None:
        raise RecordRejectedError(
            f"status code {record.status_code!r} means court_date_set but the record has no court_date"
        )
    if court_date is not None and court_date < EARLIEST_EFFECTIVE:
        raise RecordRejectedError(f"court_date {court_date.isoformat()} is before 1900")
    birth = record.date_of_birth
    if birth is not None and not EARLIEST_EFFECTIVE.date() <= birth <= now.astimezone(timezone).date():
        raise RecordRejectedError(f"date_of_birth {birth.isoformat()} is before 1900 or in the future")
    release_reason = mapping.release_reason
    if mapping.status is CustodyStatus.RELEASED and release_reason is None:
        release_reason = ReleaseReason.OTHER
    if record.transferred_to_agency_id is not None and mapping.status is not CustodyStatus.TRANSFERRED:
        raise RecordRejectedError("transferred_to_agency_id only goes with a status that means transferred")
    return CustodyRecord(
        record_id=record.record_id,
        identifiers=unique_identifiers,
        status_code=record.status_code,
        status=mapping.status,
        release_reason=release_reason,
        effective_at=effective_at,
        sequence=record.sequence,
        display_name=record.name,
        date_of_birth=record.date_of_birth,
        facility=record.facility,
        transfer_destination=record.transfer_destination if mapping.status is CustodyStatus.TRANSFERRED else None,
        court_date=court_date if mapping.status is CustodyStatus.COURT_DATE_SET else None,
        case=case_information(record, timezone),
        transferred_to_agency_id=record.transferred_to_agency_id,
    )


def case_information(record: RecordIn, zone: ZoneInfo) -> CaseInformation | None:
    """The case information a record shares, its times in UTC; None when it shares none."""
    case = CaseInformation(
        charges=record.charges,
        next_court_at=_aware(record.next_court_at, zone, "next_court_at") if record.next_court_at else None,
        court_name=record.court_name,
        scheduled_release_at=_aware(record.scheduled_release_at, zone, "scheduled_release_at")
        if record.scheduled_release_at
        else None,
        immigration_stage=record.immigration_stage,
        bond_amount=record.bond_amount,
        hold_reason=record.hold_reason,
        victim_contact_role=record.victim_contact_role,
    )
    return None if case == CaseInformation() else case


KIND_ORDER = {IdentifierKind.PERSON_NUMBER: 0, IdentifierKind.BOOKING_NUMBER: 1, IdentifierKind.CASE_NUMBER: 2}


def sorted_identifiers(identifiers: Iterable[Identifier]) -> list[SubjectIdentifier]:
    ordered = sorted(identifiers, key=lambda i: (KIND_ORDER[i.kind], normalise_identifier(i.value)))
    return [SubjectIdentifier(kind=i.kind, value=i.value) for i in ordered]
