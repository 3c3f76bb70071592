"""Change detection: which records are news for a victim, and the events and writes a batch makes (pure: no I/O)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Literal

from services.ingest.domain.events import EVENT_SOURCE, event_id_for, event_key, subject_id_for
from services.ingest.domain.records import CustodyRecord, Identifier, RecordRejectedError, sorted_identifiers
from services.ingest.storm_holds.domain import is_urgent
from shared.envelope import encode, new_event
from shared.events import CaseInformation, CustodyStatusChanged
from shared.vocabulary import CustodyStatus, ReleaseReason


class RecordResult(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    STALE = "stale"
    SEALED = "sealed"
    REJECTED = "rejected"


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
