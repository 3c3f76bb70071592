"""Subjects, their identifiers and the custody records applied to them; set-based wherever a batch is written."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import TypeVar

from services.ingest.domain.changes import BatchPlan, Snapshot, SubjectState
from services.ingest.domain.records import Identifier
from shared.db import Connection
from shared.events import CaseInformation
from shared.outbox import OutboxRow, enqueue_rows
from shared.vocabulary import CustodyStatus, IdentifierKind, ReleaseReason


async def load_snapshot(
    connection: Connection, agency_id: str, keys: Iterable[tuple[str, str]], record_ids: Iterable[str]
) -> Snapshot:
    """The subjects any of ``keys`` names (with all their identifiers) and which ``record_ids`` are known."""
    unique_keys = set(keys)
    kinds, values = zip(*unique_keys, strict=True) if unique_keys else ((), ())
    owner_rows = await connection.fetch(
        "SELECT DISTINCT i.subject_id FROM subject_identifiers i"
        " JOIN unnest($2::text[], $3::text[]) AS k(kind, normalised) USING (kind, normalised)"
        " WHERE i.agency_id = $1",
        agency_id,
        list(kinds),
        list(values),
    )
    subject_ids = [row["subject_id"] for row in owner_rows]
    subjects: dict[str, SubjectState] = {}
    identifier_owner: dict[tuple[str, str], str] = {}
    if subject_ids:
        for row in await connection.fetch(
            "SELECT subject_id, display_name, facility, status, release_reason, transfer_destination, court_date,"
            " effective_at, sequence, in_custody, last_record_id, sealed_at IS NOT NULL AS sealed, overridden,"
            " case_info, transferred_to_agency_id FROM subjects WHERE subject_id = ANY($1::uuid[])",
            subject_ids,
        ):
            subject_id = str(row["subject_id"])
            subjects[subject_id] = SubjectState(
                subject_id=subject_id,
                display_name=row["display_name"],
                facility=row["facility"],
                status=CustodyStatus(row["status"]) if row["status"] else None,
                release_reason=ReleaseReason(row["release_reason"]) if row["release_reason"] else None,
                transfer_destination=row["transfer_destination"],
                court_date=row["court_date"],
                effective_at=row["effective_at"],
                sequence=row["sequence"],
                in_custody=row["in_custody"],
                last_record_id=row["last_record_id"],
                sealed=row["sealed"],
                overridden=row["overridden"],
                case=None if row["case_info"] is None else CaseInformation.model_validate(row["case_info"]),
                transferred_to_agency_id=row["transferred_to_agency_id"],
            )
        for row in await connection.fetch(
            "SELECT subject_id, kind, normalised, value FROM subject_identifiers WHERE subject_id = ANY($1::uuid[])",
            subject_ids,
        ):
            subject_id = str(row["subject_id"])
            key = (row["kind"], row["normalised"])
            subjects[subject_id].identifiers[key] = Identifier(IdentifierKind(row["kind"]), row["value"])
            identifier_owner[key] = subject_id
    known = await connection.fetch(
        "SELECT record_id FROM custody_records WHERE agency_id = $1 AND record_id = ANY($2::text[])",
        agency_id,
        list(set(record_ids)),
    )
    return Snapshot(subjects, identifier_owner, {row["record_id"] for row in known})


WRITE_SLICE = 2_000
"""Rows per statement when a batch is written: large feeds in bounded memory (asyncpg encodes each whole)."""

T = TypeVar("T")


def slices(items: Sequence[T], size: int = WRITE_SLICE) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def save_plan(
    connection: Connection,
    agency_id: str,
    plan: BatchPlan,
    *,
    batch_id: str,
    received_at: datetime,
    events: Sequence[OutboxRow],
) -> None:
    """Write a planned batch (subjects, identifiers, records, outbox events) in the caller's transaction."""
    all_touched = [plan.subjects[subject_id] for subject_id in sorted({a.subject_id for a in plan.applied})]
    for touched in slices(all_touched):
        await connection.execute(
            "INSERT INTO subjects (subject_id, display_name, facility, status, release_reason,"
            " transfer_destination, court_date, effective_at, sequence, in_custody, last_record_id, overridden,"
            " case_info, transferred_to_agency_id, agency_id)"
            " SELECT s.*, $1 FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],"
            " $8::timestamptz[], $9::timestamptz[], $10::bigint[], $11::boolean[], $12::text[], $13::boolean[],"
            " $14::jsonb[], $15::text[])"
            " AS s(subject_id, display_name, facility, status, release_reason, transfer_destination, court_date,"
            " effective_at, sequence, in_custody, last_record_id, overridden, case_info, transferred_to_agency_id)"
            " ON CONFLICT (subject_id) DO UPDATE SET display_name = excluded.display_name,"
            " facility = excluded.facility, status = excluded.status, release_reason = excluded.release_reason,"
            " transfer_destination = excluded.transfer_destination, court_date = excluded.court_date,"
            " effective_at = excluded.effective_at, sequence = excluded.sequence, in_custody = excluded.in_custody,"
            " last_record_id = excluded.last_record_id, overridden = excluded.overridden,"
            " case_info = excluded.case_info, transferred_to_agency_id = excluded.transferred_to_agency_id,"
            " updated_at = now()",
            agency_id,
            [s.subject_id for s in touched],
            [s.display_name for s in touched],
            [s.facility for s in touched],
            [s.status.value if s.status else None for s in touched],
            [s.release_reason.value if s.release_reason else None for s in touched],
            [s.transfer_destination for s in touched],
            [s.court_date for s in touched],
            [s.effective_at for s in touched],
            [s.sequence for s in touched],
            [s.in_custody for s in touched],
            [s.last_record_id for s in touched],
            [s.overridden for s in touched],
            [s.case.model_dump(mode="json") if s.case else None for s in touched],
            [s.transferred_to_agency_id for s in touched],
        )
    for entries in slices(list(plan.new_identifiers.items())):
        await connection.execute(
            "INSERT INTO subject_identifiers (agency_id, kind, normalised, value, subject_id)"
            " SELECT $1, k, n, v, s FROM unnest($2::text[], $3::text[], $4::text[], $5::uuid[]) AS t(k, n, v, s)",
            agency_id,
            [key[0] for key, _ in entries],
            [key[1] for key, _ in entries],
            [identifier.value for _, (identifier, _) in entries],
            [subject_id for _, (_, subject_id) in entries],
        )
    for applied in slices(plan.applied):
        await connection.execute(
            "INSERT INTO custody_records (agency_id, record_id, batch_id, subject_id, status_code, status,"
            " effective_at, sequence, result, event_id, received_at)"
            " SELECT $1, r, $2, s, c, st, e, q, res, ev, $3 FROM unnest($4::text[], $5::uuid[], $6::text[],"
            " $7::text[], $8::timestamptz[], $9::bigint[], $10::text[], $11::text[]) AS t(r, s, c, st, e, q, res, ev)",
            agency_id,
            batch_id,
            received_at,
            [a.record.record_id for a in applied],
            [a.subject_id for a in applied],
            [a.record.status_code for a in applied],
            [a.record.status.value for a in applied],
            [a.record.effective_at for a in applied],
            [a.record.sequence for a in applied],
            [a.result.value for a in applied],
            [a.event_id for a in applied],
        )
    for rows in slices(events):
        await enqueue_rows(connection, rows)


async def in_custody_count(connection: Connection, agency_id: str) -> int:
    count: int = await connection.fetchval(
        "SELECT count(*) FROM subjects WHERE agency_id = $1 AND in_custody AND sealed_at IS NULL", agency_id
    )
    return count


async def add_identifiers(
    connection: Connection, agency_id: str, subject_id: str, identifiers: Iterable[Identifier]
) -> None:
    await connection.executemany(
        "INSERT INTO subject_identifiers (agency_id, kind, normalised, value, subject_id) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT DO NOTHING",
        [(agency_id, i.key[0], i.key[1], i.value, subject_id) for i in identifiers],
    )


async def subject_identifiers(connection: Connection, subject_id: str) -> list[Identifier]:
    rows = await connection.fetch(
        "SELECT kind, value FROM subject_identifiers WHERE subject_id = $1 ORDER BY kind, normalised", subject_id
    )
    return [Identifier(IdentifierKind(row["kind"]), row["value"]) for row in rows]


async def subject_of_record(connection: Connection, agency_id: str, record_id: str) -> str | None:
    """The subject an applied record was applied to; None when the record was not applied."""
    subject_id: str | None = await connection.fetchval(
        "SELECT subject_id::text FROM custody_records WHERE agency_id = $1 AND record_id = $2", agency_id, record_id
    )
    return subject_id
