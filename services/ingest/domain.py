"""Pure ingest logic: validate and normalise agency records, detect real custody changes. No I/O here.

Dates: an ``effective_at`` with an offset is taken as given; one without an offset is read in the agency's time
zone. A time more than the allowed skew in the future, or before 1900, is rejected.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from functools import cached_property
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from services.ingest.storm import is_urgent
from shared.events import (
    CaseInformation,
    Charge,
    CustodyStatusChanged,
    SubjectIdentifier,
    encode,
    event_source,
    new_event,
)
from shared.vocabulary import (
    ContactRole,
    CustodyStatus,
    IdentifierKind,
    ImmigrationStage,
    ReleaseReason,
    normalise_identifier,
)

EVENT_NAMESPACE = uuid.UUID("5b0c1f5e-3f55-4a57-9b4c-2f0d6c2a9e11")
EVENT_SOURCE = event_source("ingest")
EARLIEST_EFFECTIVE = datetime(1900, 1, 1, tzinfo=UTC)
MAX_IDENTIFIER_LENGTH = 64


class RecordResult(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    STALE = "stale"
    SEALED = "sealed"
    REJECTED = "rejected"


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

    record_id: str = Field(min_length=1, max_length=128, description="The agency's own id of this record.")
    person_number: str | None = Field(default=None, max_length=MAX_IDENTIFIER_LENGTH, description="Person/A-number.")
    booking_number: str | None = Field(default=None, max_length=MAX_IDENTIFIER_LENGTH)
    case_numbers: list[str] = Field(default_factory=list, max_length=50)
    name: str | None = Field(default=None, max_length=200, description="Name for display.")
    date_of_birth: date | None = Field(
        default=None,
        description="Where the agency shares it: lets a victim without a number find the person by last name and "
        "date of birth (only where the agency allows a search by name). Never shown.",
    )
    facility: str | None = Field(default=None, max_length=200)
    status_code: str = Field(min_length=1, max_length=64, description="The agency's code, mapped by its status map.")
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
    bond_amount: Decimal | None = Field(default=None, ge=0, max_digits=12, decimal_places=2)
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
        cleaned = [value.strip() for value in values if value.strip()]
        too_long = [value for value in cleaned if len(value) > MAX_IDENTIFIER_LENGTH]
        if too_long:
            raise ValueError(f"case numbers may have at most {MAX_IDENTIFIER_LENGTH} characters")
        return cleaned


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


def _aware(value: datetime, zone: ZoneInfo) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)


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
    effective_at = _aware(record.effective_at, timezone)
    if effective_at < EARLIEST_EFFECTIVE:
        raise RecordRejectedError(f"effective_at {effective_at.isoformat()} is before 1900")
    if effective_at > now + max_skew:
        raise RecordRejectedError(
            f"effective_at {effective_at.isoformat()} is in the future (more than {int(max_skew.total_seconds())} s "
            "ahead of the server clock)"
        )
    court_date = _aware(record.court_date, timezone) if record.court_date is not None else None
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
        next_court_at=_aware(record.next_court_at, zone) if record.next_court_at else None,
        court_name=record.court_name,
        scheduled_release_at=_aware(record.scheduled_release_at, zone) if record.scheduled_release_at else None,
        immigration_stage=record.immigration_stage,
        bond_amount=record.bond_amount,
        hold_reason=record.hold_reason,
        victim_contact_role=record.victim_contact_role,
    )
    return None if case == CaseInformation() else case


# --- change detection -------------------------------------------------------------------------------------------

Position = tuple[datetime, int]
"""Where a record sits in a subject's history: effective time, then the agency's sequence (-1 when absent)."""


def position_of(effective_at: datetime, sequence: int | None) -> Position:
    return (effective_at, -1 if sequence is None else sequence)


@dataclass(frozen=True)
class StatusSignature:
    """What makes two statuses the same for a victim: a new release reason, destination or court date is news."""

    status: CustodyStatus
    release_reason: ReleaseReason | None = None
    transfer_destination: str | None = None
    court_date: datetime | None = None

    @classmethod
    def of(cls, record: CustodyRecord) -> StatusSignature:
        return cls(record.status, record.release_reason, record.transfer_destination, record.court_date)


class Change(StrEnum):
    NEW_STATUS = "new_status"
    SAME_STATUS = "same_status"
    OLDER = "older"


def detect_change(current: tuple[Position, StatusSignature] | None, position: Position, new: StatusSignature) -> Change:
    """Compare a record with a subject's newest applied state.

    Older than the newest position: stale. Otherwise the same status again is a repeat; anything else a real change.
    A repeat still moves the position forward, so an older record arriving later cannot undo it.
    """
    if current is None:
        return Change.NEW_STATUS
    current_position, current_signature = current
    if position < current_position:
        return Change.OLDER
    return Change.SAME_STATUS if new == current_signature else Change.NEW_STATUS


STILL_IN_CUSTODY = frozenset({CustodyStatus.IN_CUSTODY, CustodyStatus.RETURNED_TO_CUSTODY})
OUT_OF_CUSTODY = frozenset(
    {
        CustodyStatus.RELEASED,
        CustodyStatus.TRANSFERRED,
        CustodyStatus.ESCAPED,
        CustodyStatus.DECEASED,
        CustodyStatus.REMOVED,
    }
)


def in_custody_after(status: CustodyStatus, before: bool) -> bool:
    """Whether the subject is held here after ``status``; a court date says nothing about custody."""
    if status in STILL_IN_CUSTODY:
        return True
    if status in OUT_OF_CUSTODY:
        return False
    return before


@dataclass
class SubjectState:
    subject_id: str
    identifiers: dict[tuple[str, str], Identifier] = field(default_factory=dict)
    display_name: str | None = None
    facility: str | None = None
    status: CustodyStatus | None = None
    release_reason: ReleaseReason | None = None
    transfer_destination: str | None = None
    court_date: datetime | None = None
    effective_at: datetime | None = None
    sequence: int | None = None
    in_custody: bool = False
    last_record_id: str | None = None
    sealed: bool = False
    overridden: bool = False
    case: CaseInformation | None = None
    transferred_to_agency_id: str | None = None

    def current(self) -> tuple[Position, StatusSignature] | None:
        if self.status is None or self.effective_at is None:
            return None
        signature = StatusSignature(self.status, self.release_reason, self.transfer_destination, self.court_date)
        return position_of(self.effective_at, self.sequence), signature


def subject_id_for(agency_id: str, first_record_id: str) -> str:
    """Deterministic, so re-processing a raw batch after a crash creates the same subject and the same events."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"subject:{agency_id}/{first_record_id}"))


def event_id_for(agency_id: str, record_id: str) -> str:
    return str(uuid.uuid5(EVENT_NAMESPACE, f"custody:{agency_id}/{record_id}"))


def event_key(agency_id: str, subject_id: str) -> str:
    return f"{agency_id}/{subject_id}"


@dataclass(frozen=True)
class Outcome:
    index: int
    record_id: str | None
    result: RecordResult
    reason: str | None = None
    subject_id: str | None = None
    event_id: str | None = None


@dataclass(frozen=True)
class AppliedRecord:
    record: CustodyRecord
    subject_id: str
    result: RecordResult
    event_id: str | None


@dataclass(frozen=True)
class PlannedEvent:
    """A custody event, encoded as soon as it is decided: a 15,000-record feed must not hold 15,000 models."""

    event_id: str
    key: str
    subject_id: str
    status: CustodyStatus
    value: bytes
    case_information_only: bool = False

    @property
    def urgent(self) -> bool:
        """Counts towards a storm: a new urgent status, not new case information of a person already released."""
        return is_urgent(self.status) and not self.case_information_only

    @property
    def payload(self) -> CustodyStatusChanged:
        return CustodyStatusChanged.model_validate(json.loads(self.value)["data"])


@dataclass
class BatchPlan:
    outcomes: list[Outcome] = field(default_factory=list)
    applied: list[AppliedRecord] = field(default_factory=list)
    events: list[PlannedEvent] = field(default_factory=list)
    subjects: dict[str, SubjectState] = field(default_factory=dict)
    new_subjects: set[str] = field(default_factory=set)
    new_identifiers: dict[tuple[str, str], tuple[Identifier, str]] = field(default_factory=dict)

    def count(self, result: RecordResult) -> int:
        return sum(1 for outcome in self.outcomes if outcome.result is result)


@dataclass
class Snapshot:
    """What the store knows before the batch: the subjects its records name and the record ids already applied."""

    subjects: dict[str, SubjectState]
    identifier_owner: dict[tuple[str, str], str]
    known_record_ids: set[str]


Parsed = CustodyRecord | RecordRejectedError
Origin = Literal["feed", "operator_override"]


def plan_batch(
    agency_id: str,
    entries: Sequence[tuple[int, Parsed]],
    snapshot: Snapshot,
    *,
    batch_id: str,
    received_at: datetime,
    origin: Origin = "feed",
) -> BatchPlan:
    """Decide each record's fate in order and the events to emit; the snapshot is updated as records apply."""
    plan = BatchPlan(subjects=snapshot.subjects)
    seen_in_batch: set[str] = set()
    for index, entry in entries:
        if isinstance(entry, RecordRejectedError):
            plan.outcomes.append(Outcome(index, entry.record_id, RecordResult.REJECTED, str(entry)))
            continue
        record = entry
        if record.record_id in seen_in_batch:
            plan.outcomes.append(
                Outcome(index, record.record_id, RecordResult.REJECTED, "record_id repeated within this batch")
            )
            continue
        seen_in_batch.add(record.record_id)
        if record.record_id in snapshot.known_record_ids:
            plan.outcomes.append(Outcome(index, record.record_id, RecordResult.DUPLICATE, "record_id already received"))
            continue
        owners = {snapshot.identifier_owner[i.key] for i in record.identifiers if i.key in snapshot.identifier_owner}
        if len(owners) > 1:
            plan.outcomes.append(
                Outcome(
                    index,
                    record.record_id,
                    RecordResult.REJECTED,
                    "identifiers belong to different subjects; correct the record or merge the subjects",
                )
            )
            continue
        outcome = _apply(
            agency_id, record, owners, snapshot, plan, batch_id=batch_id, received_at=received_at, origin=origin
        )
        snapshot.known_record_ids.add(record.record_id)
        plan.outcomes.append(replace(outcome, index=index))
    return plan


def _apply(
    agency_id: str,
    record: CustodyRecord,
    owners: set[str],
    snapshot: Snapshot,
    plan: BatchPlan,
    *,
    batch_id: str,
    received_at: datetime,
    origin: Origin,
) -> Outcome:
    if owners:
        subject = snapshot.subjects[next(iter(owners))]
    else:
        subject = SubjectState(subject_id=subject_id_for(agency_id, record.record_id))
        snapshot.subjects[subject.subject_id] = subject
        plan.new_subjects.add(subject.subject_id)
    plan.subjects[subject.subject_id] = subject
    for identifier in record.identifiers:
        if identifier.key not in subject.identifiers:
            subject.identifiers[identifier.key] = identifier
            snapshot.identifier_owner[identifier.key] = subject.subject_id
            plan.new_identifiers[identifier.key] = (identifier, subject.subject_id)

    signature = StatusSignature.of(record)
    position = position_of(record.effective_at, record.sequence)
    change = detect_change(subject.current(), position, signature)
    agrees_with_override = subject.overridden and origin == "feed" and record.status is subject.status
    if change is Change.NEW_STATUS and agrees_with_override:
        change = Change.SAME_STATUS
    if change is Change.OLDER:
        plan.applied.append(AppliedRecord(record, subject.subject_id, RecordResult.STALE, None))
        return Outcome(0, record.record_id, RecordResult.STALE, "older than the subject's newest record", None)

    case_changed = record.case is not None and record.case != subject.case
    previous_status = subject.status
    subject.case = record.case or subject.case
    subject.transferred_to_agency_id = record.transferred_to_agency_id
    subject.display_name = record.display_name or subject.display_name
    subject.facility = record.facility or subject.facility
    subject.status = record.status
    subject.release_reason = record.release_reason
    subject.transfer_destination = record.transfer_destination
    subject.court_date = record.court_date
    subject.effective_at = record.effective_at
    subject.sequence = record.sequence
    subject.in_custody = in_custody_after(record.status, subject.in_custody)
    subject.last_record_id = record.record_id
    subject.overridden = origin == "operator_override"

    if change is Change.SAME_STATUS and not case_changed:
        plan.applied.append(AppliedRecord(record, subject.subject_id, RecordResult.DUPLICATE, None))
        reason = (
            "agrees with an operator's override: no second notice"
            if agrees_with_override
            else "same status as the subject's current one"
        )
        return Outcome(0, record.record_id, RecordResult.DUPLICATE, reason)
    if subject.sealed:
        plan.applied.append(AppliedRecord(record, subject.subject_id, RecordResult.SEALED, None))
        return Outcome(0, record.record_id, RecordResult.SEALED, "subject is sealed: stored, nothing disclosed")

    event_id = event_id_for(agency_id, record.record_id)
    payload = CustodyStatusChanged(
        agency_id=agency_id,
        subject_id=subject.subject_id,
        identifiers=sorted_identifiers(subject.identifiers.values()),
        display_name=subject.display_name,
        date_of_birth=record.date_of_birth,
        facility=subject.facility,
        status=record.status,
        previous_status=previous_status,
        release_reason=record.release_reason,
        transfer_destination=record.transfer_destination,
        court_date=record.court_date,
        effective_at=record.effective_at,
        sequence=record.sequence,
        agency_record_id=record.record_id,
        feed_batch_id=batch_id,
        origin=origin,
        received_at=received_at,
        case=subject.case,
        case_information_only=change is Change.SAME_STATUS,
        transferred_to_agency_id=record.transferred_to_agency_id,
    )
    key = event_key(agency_id, subject.subject_id)
    value = encode(new_event(payload, source=EVENT_SOURCE, subject=key, event_id=event_id, at=received_at))
    plan.events.append(
        PlannedEvent(event_id, key, subject.subject_id, record.status, value, change is Change.SAME_STATUS)
    )
    plan.applied.append(AppliedRecord(record, subject.subject_id, RecordResult.ACCEPTED, event_id))
    return Outcome(0, record.record_id, RecordResult.ACCEPTED, None, subject.subject_id, event_id)


KIND_ORDER = {IdentifierKind.PERSON_NUMBER: 0, IdentifierKind.BOOKING_NUMBER: 1, IdentifierKind.CASE_NUMBER: 2}


def sorted_identifiers(identifiers: Iterable[Identifier]) -> list[SubjectIdentifier]:
    ordered = sorted(identifiers, key=lambda i: (KIND_ORDER[i.kind], normalise_identifier(i.value)))
    return [SubjectIdentifier(kind=i.kind, value=i.value) for i in ordered]


def feed_is_stale(last_feed_at: datetime | None, since: datetime, expected_minutes: int, now: datetime) -> bool:
    """A feed is quiet when nothing arrived for longer than its expected interval (counted from creation if never)."""
    return now - (last_feed_at or since) > timedelta(minutes=expected_minutes)
