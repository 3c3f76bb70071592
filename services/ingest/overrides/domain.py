"""An operator's override as a custody record (pure): it goes through the same change detection as a feed record."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from services.ingest.domain.changes import RecordResult
from services.ingest.domain.records import CustodyRecord, Identifier
from shared.vocabulary import CustodyStatus, IdentifierKind, ReleaseReason


@dataclass(frozen=True)
class OverrideRequest:
    identifiers: tuple[Identifier, ...]
    status: CustodyStatus
    effective_at: datetime
    operator: str
    reason: str
    release_reason: ReleaseReason | None = None
    transfer_destination: str | None = None
    court_date: datetime | None = None
    facility: str | None = None
    display_name: str | None = None


def override_record(override_id: str, request: OverrideRequest) -> CustodyRecord:
    """The override as a custody record: it goes through the same change detection as a feed record."""
    release_reason = request.release_reason
    if request.status is CustodyStatus.RELEASED and release_reason is None:
        release_reason = ReleaseReason.OTHER
    return CustodyRecord(
        record_id=f"override:{override_id}",
        identifiers=request.identifiers,
        status_code="OPERATOR_OVERRIDE",
        status=request.status,
        release_reason=release_reason if request.status is CustodyStatus.RELEASED else None,
        effective_at=request.effective_at.astimezone(UTC),
        sequence=None,
        display_name=request.display_name,
        facility=request.facility,
        transfer_destination=request.transfer_destination if request.status is CustodyStatus.TRANSFERRED else None,
        court_date=request.court_date if request.status is CustodyStatus.COURT_DATE_SET else None,
    )


def identifiers_of(
    person_number: str | None, booking_number: str | None, case_numbers: list[str]
) -> tuple[Identifier, ...]:
    given = [
        Identifier(kind, value.strip())
        for kind, value in (
            (IdentifierKind.PERSON_NUMBER, person_number),
            (IdentifierKind.BOOKING_NUMBER, booking_number),
            *((IdentifierKind.CASE_NUMBER, case) for case in case_numbers),
        )
        if value and value.strip()
    ]
    return tuple({identifier.key: identifier for identifier in given}.values())


RESULT_OF_OVERRIDE = {
    RecordResult.ACCEPTED: "accepted",
    RecordResult.DUPLICATE: "duplicate",
    RecordResult.STALE: "stale",
    RecordResult.SEALED: "sealed",
}
