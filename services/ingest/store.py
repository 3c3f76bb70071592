"""All of ingest's SQL: plain async functions taking a connection; set-based wherever a batch is written."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import asyncpg

from services.ingest.domain import (
    BatchPlan,
    Identifier,
    RecordResult,
    Snapshot,
    StatusMap,
    SubjectState,
    parse_status_map,
)
from services.ingest.storm import StormPolicy
from shared.db import Connection
from shared.events import AgencyResources, CaseInformation, ReminderPolicy
from shared.outbox import NOTIFY_CHANNEL, OutboxRow, enqueue_rows
from shared.vocabulary import URGENT_STATUSES, CustodyStatus, IdentifierKind, ReleaseReason

# --- agencies ---------------------------------------------------------------------------------------------------

AGENCY_COLUMNS = (
    "agency_id, name, timezone, contact_phone, victim_services_phone, victim_services_url,"
    " expected_feed_interval_minutes, notices_paused, active, status_map, csv_columns, created_at, updated_at,"
    " last_feed_at, feed_stale, storm_window_minutes, storm_population_share, storm_min_changes, storm_rate_multiple,"
    " silence_notice_after_minutes, silence_notified_for, public_name_search, resources, reminders"
)
EDITABLE_AGENCY_FIELDS = frozenset(
    {
        "name",
        "timezone",
        "contact_phone",
        "victim_services_phone",
        "victim_services_url",
        "expected_feed_interval_minutes",
        "notices_paused",
        "active",
        "status_map",
        "csv_columns",
        "storm_window_minutes",
        "storm_population_share",
        "storm_min_changes",
        "storm_rate_multiple",
        "silence_notice_after_minutes",
        "public_name_search",
        "resources",
        "reminders",
    }
)


@dataclass(frozen=True)
class Agency:
    agency_id: str
    name: str
    timezone: str
    contact_phone: str | None
    victim_services_phone: str | None
    victim_services_url: str | None
    expected_feed_interval_minutes: int
    notices_paused: bool
    active: bool
    status_map: StatusMap
    csv_columns: dict[str, str]
    created_at: datetime
    updated_at: datetime
    last_feed_at: datetime | None
    feed_stale: bool
    storm_window_minutes: int
    storm_population_share: float
    storm_min_changes: int
    storm_rate_multiple: float
    silence_notice_after_minutes: int | None
    silence_notified_for: datetime | None
    public_name_search: bool
    resources: AgencyResources
    reminders: ReminderPolicy

    @property
    def storm_policy(self) -> StormPolicy:
        return StormPolicy(
            window_minutes=self.storm_window_minutes,
            population_share=self.storm_population_share,
            min_changes=self.storm_min_changes,
            rate_multiple=self.storm_rate_multiple,
        )

    @classmethod
    def from_row(cls, row: Mapping[str, Any] | asyncpg.Record) -> Agency:
        values = dict(row)
        values["status_map"] = parse_status_map(values["status_map"])
        values["resources"] = AgencyResources.model_validate(values["resources"])
        values["reminders"] = ReminderPolicy.model_validate(values["reminders"])
        return cls(**values)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", exclude_none=True)
    return value


async def insert_agency(connection: Connection, values: Mapping[str, Any]) -> Agency | None:
    """Create an agency; None when the id is taken."""
    columns = ["agency_id", *sorted(EDITABLE_AGENCY_FIELDS & set(values))]
    placeholders = ", ".join(f"${n}" for n in range(1, len(columns) + 1))
    row = await connection.fetchrow(
        f"INSERT INTO agencies ({', '.join(columns)}) VALUES ({placeholders})"  # noqa: S608 - fixed column names
        f" ON CONFLICT (agency_id) DO NOTHING RETURNING {AGENCY_COLUMNS}",
        *(_jsonable(values[column]) for column in columns),
    )
    return Agency.from_row(row) if row else None


async def update_agency(connection: Connection, agency_id: str, changes: Mapping[str, Any]) -> Agency | None:
    columns = sorted(EDITABLE_AGENCY_FIELDS & set(changes))
    assignments = ", ".join(f"{column} = ${n}" for n, column in enumerate(columns, start=2))
    row = await connection.fetchrow(
        f"UPDATE agencies SET {assignments + ', ' if assignments else ''}updated_at = now()"  # noqa: S608
        f" WHERE agency_id = $1 RETURNING {AGENCY_COLUMNS}",
        agency_id,
        *(_jsonable(changes[column]) for column in columns),
    )
    return Agency.from_row(row) if row else None


async def get_agency(connection: Connection, agency_id: str, *, for_update: bool = False) -> Agency | None:
    """``for_update`` serialises work on one agency; NO KEY UPDATE leaves foreign-key checks (KEY SHARE) unblocked."""
    lock = " FOR NO KEY UPDATE" if for_update else ""
    row = await connection.fetchrow(
        f"SELECT {AGENCY_COLUMNS} FROM agencies WHERE agency_id = $1{lock}",  # noqa: S608
        agency_id,
    )
    return Agency.from_row(row) if row else None


async def list_agencies(connection: Connection) -> list[Agency]:
    rows = await connection.fetch(f"SELECT {AGENCY_COLUMNS} FROM agencies ORDER BY agency_id")  # noqa: S608
    return [Agency.from_row(row) for row in rows]


async def set_feed_stale(connection: Connection, agency_id: str, stale: bool) -> None:
    await connection.execute("UPDATE agencies SET feed_stale = $2 WHERE agency_id = $1", agency_id, stale)


# --- API keys ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredKey:
    key_id: str
    agency_id: str
    key_hash: str
    label: str | None
    created_at: datetime
    revoked_at: datetime | None


async def insert_key(connection: Connection, key_id: str, agency_id: str, key_hash: str, label: str | None) -> datetime:
    created: datetime = await connection.fetchval(
        "INSERT INTO api_keys (key_id, agency_id, key_hash, label) VALUES ($1, $2, $3, $4) RETURNING created_at",
        key_id,
        agency_id,
        key_hash,
        label,
    )
    return created


async def find_key(connection: Connection, key_id: str) -> StoredKey | None:
    row = await connection.fetchrow(
        "SELECT key_id, agency_id, key_hash, label, created_at, revoked_at FROM api_keys WHERE key_id = $1", key_id
    )
    return StoredKey(**dict(row)) if row else None


async def list_keys(connection: Connection, agency_id: str) -> list[StoredKey]:
    rows = await connection.fetch(
        "SELECT key_id, agency_id, key_hash, label, created_at, revoked_at FROM api_keys WHERE agency_id = $1"
        " ORDER BY created_at",
        agency_id,
    )
    return [StoredKey(**dict(row)) for row in rows]


async def revoke_key(connection: Connection, agency_id: str, key_id: str) -> bool:
    """Revoke a key of the agency; False when it has no such key. Revoking twice is harmless."""
    revoked = await connection.fetchval(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE agency_id = $1 AND key_id = $2"
        " RETURNING true",
        agency_id,
        key_id,
    )
    return bool(revoked)


# --- raw batches and files --------------------------------------------------------------------------------------

BATCH_COLUMNS = (
    "batch_id, agency_id, kind, idempotency_key, body_sha256, size_bytes, status, received_at, processed_at,"
    " rows_processed, rows_accepted, rows_rejected, error, result"
)


@dataclass(frozen=True)
class StoredBatch:
    batch_id: str
    agency_id: str
    kind: str
    idempotency_key: str | None
    body_sha256: str | None
    size_bytes: int
    status: str
    received_at: datetime
    processed_at: datetime | None
    rows_processed: int
    rows_accepted: int
    rows_rejected: int
    error: str | None
    result: Any

    @classmethod
    def from_row(cls, row: Mapping[str, Any] | asyncpg.Record) -> StoredBatch:
        values = dict(row)
        values["batch_id"] = str(values["batch_id"])
        return cls(**values)


async def insert_batch(
    connection: Connection,
    *,
    batch_id: str,
    agency_id: str,
    kind: str,
    status: str,
    idempotency_key: str | None = None,
    body_sha256: str | None = None,
    body: bytes | None = None,
) -> StoredBatch | None:
    """Store a received batch; None when the agency already used this idempotency key."""
    row = await connection.fetchrow(
        "INSERT INTO feed_batches (batch_id, agency_id, kind, idempotency_key, body_sha256, body, size_bytes, status)"  # noqa: S608
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (agency_id, idempotency_key) DO NOTHING"
        f" RETURNING {BATCH_COLUMNS}",
        batch_id,
        agency_id,
        kind,
        idempotency_key,
        body_sha256,
        body,
        len(body) if body is not None else 0,
        status,
    )
    return StoredBatch.from_row(row) if row else None


async def find_batch(
    connection: Connection, agency_id: str, *, batch_id: str | None = None, idempotency_key: str | None = None
) -> StoredBatch | None:
    row = await connection.fetchrow(
        f"SELECT {BATCH_COLUMNS} FROM feed_batches WHERE agency_id = $1"  # noqa: S608
        " AND ($2::uuid IS NULL OR batch_id = $2::uuid) AND ($3::text IS NULL OR idempotency_key = $3)",
        agency_id,
        batch_id,
        idempotency_key,
    )
    return StoredBatch.from_row(row) if row else None


async def lock_batch(connection: Connection, batch_id: str) -> tuple[StoredBatch, bytes | None] | None:
    row = await connection.fetchrow(
        f"SELECT {BATCH_COLUMNS}, body FROM feed_batches WHERE batch_id = $1 FOR NO KEY UPDATE",  # noqa: S608
        batch_id,
    )
    if row is None:
        return None
    values = dict(row)
    body = values.pop("body")
    return StoredBatch.from_row(values), (bytes(body) if body is not None else None)


async def finish_batch(
    connection: Connection,
    batch_id: str,
    *,
    status: str,
    accepted: int,
    rejected: int,
    processed: int,
    result: Any = None,
    error: str | None = None,
) -> None:
    await connection.execute(
        "UPDATE feed_batches SET status = $2, rows_accepted = $3, rows_rejected = $4, rows_processed = $5,"
        " result = $6, error = $7, processed_at = now() WHERE batch_id = $1",
        batch_id,
        status,
        accepted,
        rejected,
        processed,
        result,
        error,
    )


async def record_file_progress(
    connection: Connection, batch_id: str, *, processed: int, accepted: int, rejected: int
) -> None:
    await connection.execute(
        "UPDATE feed_batches SET status = 'processing', rows_processed = rows_processed + $2,"
        " rows_accepted = rows_accepted + $3, rows_rejected = rows_rejected + $4 WHERE batch_id = $1",
        batch_id,
        processed,
        accepted,
        rejected,
    )


async def set_batch_status(connection: Connection, batch_id: str, status: str, error: str | None = None) -> None:
    await connection.execute(
        "UPDATE feed_batches SET status = $2, error = coalesce($3, error),"
        " processed_at = CASE WHEN $2 IN ('processed', 'failed') THEN now() ELSE processed_at END"
        " WHERE batch_id = $1",
        batch_id,
        status,
        error,
    )


async def batches_to_recover(connection: Connection, kind: str, older_than: datetime, limit: int = 20) -> list[str]:
    """Batches stored but not (fully) processed, e.g. after a crash: oldest first."""
    rows = await connection.fetch(
        "SELECT batch_id FROM feed_batches WHERE kind = $1 AND status IN ('received', 'pending', 'processing')"
        " AND received_at < $2 ORDER BY received_at LIMIT $3",
        kind,
        older_than,
        limit,
    )
    return [str(row["batch_id"]) for row in rows]


async def insert_chunk(connection: Connection, batch_id: str, chunk_no: int, data: bytes) -> None:
    await connection.execute(
        "INSERT INTO feed_file_chunks (batch_id, chunk_no, data) VALUES ($1, $2, $3)", batch_id, chunk_no, data
    )


async def read_chunk(connection: Connection, batch_id: str, chunk_no: int) -> bytes | None:
    data = await connection.fetchval(
        "SELECT data FROM feed_file_chunks WHERE batch_id = $1 AND chunk_no = $2", batch_id, chunk_no
    )
    return bytes(data) if data is not None else None


async def complete_upload(connection: Connection, batch_id: str, size_bytes: int, sha256: str) -> None:
    await connection.execute(
        "UPDATE feed_batches SET status = 'pending', size_bytes = $2, body_sha256 = $3 WHERE batch_id = $1",
        batch_id,
        size_bytes,
        sha256,
    )


async def insert_row_errors(
    connection: Connection, batch_id: str, errors: Iterable[tuple[int, str | None, str]]
) -> None:
    await connection.executemany(
        "INSERT INTO feed_row_errors (batch_id, row_number, record_id, reason) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT DO NOTHING",
        [(batch_id, row, record_id, reason) for row, record_id, reason in errors],
    )


async def row_errors(
    connection: Connection, batch_id: str, limit: int, offset: int
) -> list[tuple[int, str | None, str]]:
    rows = await connection.fetch(
        "SELECT row_number, record_id, reason FROM feed_row_errors WHERE batch_id = $1 ORDER BY row_number"
        " LIMIT $2 OFFSET $3",
        batch_id,
        limit,
        offset,
    )
    return [(row["row_number"], row["record_id"], row["reason"]) for row in rows]


# --- subjects and records ---------------------------------------------------------------------------------------


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


async def add_feed_counts(
    connection: Connection, agency_id: str, at: datetime, counts: Mapping[RecordResult, int]
) -> None:
    nonzero = [(result.value, count) for result, count in counts.items() if count]
    if not nonzero:
        return
    await connection.execute(
        "INSERT INTO feed_counts (agency_id, hour, result, count)"
        " SELECT $1, date_trunc('hour', $2::timestamptz), r, c FROM unnest($3::text[], $4::bigint[]) AS t(r, c)"
        " ON CONFLICT (agency_id, hour, result) DO UPDATE SET count = feed_counts.count + excluded.count",
        agency_id,
        at,
        [result for result, _ in nonzero],
        [count for _, count in nonzero],
    )


async def in_custody_count(connection: Connection, agency_id: str) -> int:
    count: int = await connection.fetchval(
        "SELECT count(*) FROM subjects WHERE agency_id = $1 AND in_custody AND sealed_at IS NULL", agency_id
    )
    return count


@dataclass(frozen=True)
class FeedCounts:
    last_24h: dict[str, int]
    total: dict[str, int]


async def feed_counts(connection: Connection, agency_id: str, now: datetime) -> FeedCounts:
    rows = await connection.fetch(
        "SELECT result, sum(count) AS total,"
        " sum(count) FILTER (WHERE hour > $2::timestamptz - interval '24 hours') AS recent"
        " FROM feed_counts WHERE agency_id = $1 GROUP BY result",
        agency_id,
        now,
    )
    return FeedCounts(
        last_24h={row["result"]: int(row["recent"] or 0) for row in rows},
        total={row["result"]: int(row["total"]) for row in rows},
    )


# --- sealing ----------------------------------------------------------------------------------------------------


async def find_subjects_by_identifiers(
    connection: Connection, agency_id: str, keys: Iterable[tuple[str, str]]
) -> list[str]:
    kinds, values = zip(*set(keys), strict=True)
    rows = await connection.fetch(
        "SELECT DISTINCT subject_id FROM subject_identifiers"
        " JOIN unnest($2::text[], $3::text[]) AS k(kind, normalised) USING (kind, normalised)"
        " WHERE agency_id = $1",
        agency_id,
        list(kinds),
        list(values),
    )
    return [str(row["subject_id"]) for row in rows]


async def create_sealed_subject(connection: Connection, agency_id: str, subject_id: str, at: datetime) -> None:
    await connection.execute(
        "INSERT INTO subjects (subject_id, agency_id, sealed_at) VALUES ($1, $2, $3)", subject_id, agency_id, at
    )


async def seal_subject(connection: Connection, subject_id: str, at: datetime) -> datetime:
    """Seal the subject (keeping the first sealing time); returns when it was sealed."""
    sealed: datetime = await connection.fetchval(
        "UPDATE subjects SET sealed_at = coalesce(sealed_at, $2), updated_at = now() WHERE subject_id = $1"
        " RETURNING sealed_at",
        subject_id,
        at,
    )
    return sealed


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


# --- storm holds ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeldEvent:
    """One custody event kept back by a storm hold, encoded exactly as it will be published."""

    event_id: str
    subject_id: str
    topic: str
    key: str
    value: bytes
    status: str
    urgent: bool


@dataclass(frozen=True)
class StormHold:
    hold_id: str
    agency_id: str
    state: str
    opened_at: datetime
    trigger: str
    decided_at: datetime | None
    decided_by: str | None
    decision_reason: str | None
    held_changes: int
    urgent_changes: int
    by_status: dict[str, int]
    samples: list[dict[str, Any]]


HOLD_QUERY = (
    "SELECT h.hold_id::text, h.agency_id, h.state, h.opened_at, h.trigger, h.decided_at, h.decided_by,"
    " h.decision_reason, c.held, c.urgent, coalesce(c.by_status, '{}'::jsonb) AS by_status,"
    " coalesce(s.samples, '[]'::jsonb) AS samples FROM storm_holds h"
    " CROSS JOIN LATERAL (SELECT count(*) AS held, count(*) FILTER (WHERE urgent) AS urgent,"
    "   (SELECT jsonb_object_agg(status, n) FROM (SELECT status, count(*) AS n FROM held_events"
    "     WHERE hold_id = h.hold_id GROUP BY status) AS g) AS by_status"
    "   FROM held_events e WHERE e.hold_id = h.hold_id) AS c"
    " CROSS JOIN LATERAL (SELECT jsonb_agg(sample ORDER BY seq) AS samples FROM (SELECT sample, seq FROM held_events"
    "   WHERE hold_id = h.hold_id ORDER BY seq LIMIT $1) AS t) AS s"
)
SAMPLES_PER_HOLD = 10


def _hold_of(row: asyncpg.Record) -> StormHold:
    values = dict(row)
    return StormHold(
        hold_id=values["hold_id"],
        agency_id=values["agency_id"],
        state=values["state"],
        opened_at=values["opened_at"],
        trigger=values["trigger"],
        decided_at=values["decided_at"],
        decided_by=values["decided_by"],
        decision_reason=values["decision_reason"],
        held_changes=int(values["held"]),
        urgent_changes=int(values["urgent"]),
        by_status={str(key): int(value) for key, value in values["by_status"].items()},
        samples=list(values["samples"]),
    )


async def open_hold_of(connection: Connection, agency_id: str) -> str | None:
    hold_id: Any = await connection.fetchval(
        "SELECT hold_id::text FROM storm_holds WHERE agency_id = $1 AND state = 'holding'", agency_id
    )
    return None if hold_id is None else str(hold_id)


async def urgent_change_counts(
    connection: Connection, agency_id: str, window_start: datetime, baseline_start: datetime
) -> tuple[int, int]:
    """Urgent changes the agency's feed made since ``window_start``, and between ``baseline_start`` and then."""
    row = await connection.fetchrow(
        "SELECT count(*) FILTER (WHERE received_at > $2) AS recent, count(*) FILTER (WHERE received_at <= $2) AS before"
        " FROM custody_records WHERE agency_id = $1 AND event_id IS NOT NULL AND status = ANY($4::text[])"
        " AND received_at > $3 AND record_id NOT LIKE 'override:%'",
        agency_id,
        window_start,
        baseline_start,
        sorted(status.value for status in URGENT_STATUSES),
    )
    return (0, 0) if row is None else (int(row["recent"]), int(row["before"]))


async def last_hold_decision(connection: Connection, agency_id: str) -> datetime | None:
    """When an admin last released or discarded a hold of the agency: what came before is judged already."""
    decided: Any = await connection.fetchval("SELECT max(decided_at) FROM storm_holds WHERE agency_id = $1", agency_id)
    return decided if isinstance(decided, datetime) else None


async def open_hold(connection: Connection, hold_id: str, agency_id: str, opened_at: datetime, trigger: str) -> None:
    await connection.execute(
        "INSERT INTO storm_holds (hold_id, agency_id, state, opened_at, trigger) VALUES ($1, $2, 'holding', $3, $4)",
        hold_id,
        agency_id,
        opened_at,
        trigger,
    )


async def hold_events(connection: Connection, hold_id: str, events: Sequence[HeldEvent]) -> None:
    """Keep ``events`` back (in their order) and remember each subject's state before the hold first touched it."""
    if not events:
        return
    await connection.execute(
        "INSERT INTO held_subjects (hold_id, subject_id, before)"
        " SELECT $1, ids.id, CASE WHEN s.subject_id IS NULL THEN NULL ELSE to_jsonb(s) END"
        " FROM unnest($2::uuid[]) AS ids(id) LEFT JOIN subjects s ON s.subject_id = ids.id"
        " ON CONFLICT (hold_id, subject_id) DO NOTHING",
        hold_id,
        sorted({event.subject_id for event in events}),
    )
    await connection.execute(
        "INSERT INTO held_events (hold_id, event_id, subject_id, topic, key, value, status, urgent, sample)"
        " SELECT $1, i, s, t, k, v, st, u, jsonb_build_object('agency_record_id', d ->> 'agency_record_id',"
        "  'status', d ->> 'status', 'previous_status', d ->> 'previous_status', 'effective_at', d ->> 'effective_at',"
        "  'facility', d ->> 'facility', 'display_name', d ->> 'display_name')"
        " FROM unnest($2::text[], $3::uuid[], $4::text[], $5::text[], $6::bytea[], $7::text[], $8::boolean[])"
        " WITH ORDINALITY AS e(i, s, t, k, v, st, u, n)"
        " CROSS JOIN LATERAL (SELECT convert_from(v, 'UTF8')::jsonb -> 'data' AS d) AS event ORDER BY n",
        hold_id,
        [event.event_id for event in events],
        [event.subject_id for event in events],
        [event.topic for event in events],
        [event.key for event in events],
        [event.value for event in events],
        [event.status for event in events],
        [event.urgent for event in events],
    )


async def get_hold(connection: Connection, hold_id: str, *, for_update: bool = False) -> StormHold | None:
    if for_update:
        locked = await connection.fetchval("SELECT true FROM storm_holds WHERE hold_id = $1 FOR UPDATE", hold_id)
        if not locked:
            return None
    row = await connection.fetchrow(f"{HOLD_QUERY} WHERE h.hold_id = $2", SAMPLES_PER_HOLD, hold_id)
    return _hold_of(row) if row else None


async def list_holds(connection: Connection, state: str | None, limit: int = 100) -> list[StormHold]:
    rows = await connection.fetch(
        f"{HOLD_QUERY} WHERE ($2::text IS NULL OR h.state = $2) ORDER BY h.opened_at DESC LIMIT $3",
        SAMPLES_PER_HOLD,
        state,
        limit,
    )
    return [_hold_of(row) for row in rows]


async def decide_hold(connection: Connection, hold_id: str, state: str, operator: str, reason: str | None) -> None:
    await connection.execute(
        "UPDATE storm_holds SET state = $2, decided_at = now(), decided_by = $3, decision_reason = $4"
        " WHERE hold_id = $1 AND state = 'holding'",
        hold_id,
        state,
        operator,
        reason,
    )


async def publish_held_events(connection: Connection, hold_id: str) -> int:
    """Move the hold's events to the outbox in feed order (once: the outbox ignores an event id it has)."""
    status = await connection.execute(
        "INSERT INTO outbox (topic, key, event_id, value) SELECT topic, key, event_id, value FROM held_events"
        " WHERE hold_id = $1 ORDER BY seq ON CONFLICT (event_id) DO NOTHING",
        hold_id,
    )
    await connection.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
    return int(status.rsplit(" ", 1)[-1])


async def restore_held_subjects(connection: Connection, hold_id: str) -> int:
    """Put every subject the hold touched back as it was before, unless an operator has overridden it since."""
    restored = await connection.execute(
        "UPDATE subjects s SET display_name = b.display_name, facility = b.facility, status = b.status,"
        " release_reason = b.release_reason, transfer_destination = b.transfer_destination,"
        " court_date = b.court_date, effective_at = b.effective_at, sequence = b.sequence,"
        " in_custody = b.in_custody, last_record_id = b.last_record_id, overridden = b.overridden,"
        " case_info = b.case_info, transferred_to_agency_id = b.transferred_to_agency_id, updated_at = now()"
        " FROM held_subjects h CROSS JOIN LATERAL jsonb_populate_record(NULL::subjects, h.before) AS b"
        " WHERE h.hold_id = $1 AND h.before IS NOT NULL AND s.subject_id = h.subject_id AND NOT s.overridden",
        hold_id,
    )
    created = await connection.execute(
        "UPDATE subjects s SET status = NULL, release_reason = NULL, transfer_destination = NULL, court_date = NULL,"
        " effective_at = NULL, sequence = NULL, in_custody = false, case_info = NULL,"
        " transferred_to_agency_id = NULL, updated_at = now() FROM held_subjects h"
        " WHERE h.hold_id = $1 AND h.before IS NULL AND s.subject_id = h.subject_id AND NOT s.overridden",
        hold_id,
    )
    return sum(int(status.rsplit(" ", 1)[-1]) for status in (restored, created))


# --- operator overrides -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredOverride:
    override_id: str
    agency_id: str
    subject_id: str
    result: str
    event_id: str | None
    status: str
    effective_at: datetime
    operator: str
    reason: str
    created_at: datetime


OVERRIDE_COLUMNS = (
    "override_id::text, agency_id, subject_id::text, result, event_id, status, effective_at, operator, reason,"
    " created_at"
)


async def insert_override(connection: Connection, override: StoredOverride) -> None:
    await connection.execute(
        "INSERT INTO overrides (override_id, agency_id, subject_id, result, event_id, status, effective_at,"
        " operator, reason, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        override.override_id,
        override.agency_id,
        override.subject_id,
        override.result,
        override.event_id,
        override.status,
        override.effective_at,
        override.operator,
        override.reason,
        override.created_at,
    )


async def list_overrides(connection: Connection, agency_id: str, limit: int = 100) -> list[StoredOverride]:
    rows = await connection.fetch(
        f"SELECT {OVERRIDE_COLUMNS} FROM overrides WHERE agency_id = $1"  # noqa: S608 - fixed column names
        " ORDER BY created_at DESC LIMIT $2",
        agency_id,
        limit,
    )
    return [StoredOverride(**dict(row)) for row in rows]
