"""Feed batches: raw JSON or NIEM batch -> domain decisions -> store and outbox, each in the right transaction.

A JSON batch is stored raw (and committed) first; then the whole batch is applied in one transaction that locks the
batch row and the agency row, so a crash leaves either nothing or everything applied, and a second processing of the
same raw batch (retry or recovery) only returns the stored answer.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import asyncpg

from services.ingest import metrics, niem
from services.ingest.agencies import store as agencies_store
from services.ingest.agencies.domain import Agency
from services.ingest.domain.changes import Origin, Parsed, RecordResult, plan_batch
from services.ingest.domain.records import RecordRejectedError, normalise_record
from services.ingest.feed_health import store as feed_health_store
from services.ingest.feed_health.flows import note_feed_received
from services.ingest.settings import IngestSettings
from services.ingest.store import batches as batches_store
from services.ingest.store import subjects as subjects_store
from services.ingest.storm_holds.flows import hold_if_storm
from shared.db import Connection
from shared.outbox import OutboxRow
from shared.topics import CUSTODY_STATUS_CHANGED

log = logging.getLogger(__name__)


class BatchInvalidError(ValueError):
    """The batch as a whole cannot be read; ``status_code`` is the HTTP answer (400, 413, 422)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


def read_json_batch(body: bytes, max_records: int) -> list[Any]:
    """The raw records of a JSON batch, or :class:`BatchInvalidError` saying what is wrong with the body as a whole."""
    try:
        document = json.loads(body)
    except UnicodeDecodeError:
        raise BatchInvalidError(400, "body is not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise BatchInvalidError(
            400, f"body is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    except RecursionError:  # the API refuses deep JSON first; this keeps a stored batch from failing forever
        raise BatchInvalidError(400, "body is JSON nested too deeply") from None
    if _holds_nul(document):  # PostgreSQL text cannot store it: the batch must fail here, not keep failing later
        raise BatchInvalidError(422, "body holds a NUL (\\u0000) character, which no field may contain")
    if isinstance(document, list):
        records = document
    elif isinstance(document, dict) and isinstance(document.get("records"), list):
        records = document["records"]
    else:
        raise BatchInvalidError(422, 'body must be a JSON object {"records": [...]} (or a JSON array of records)')
    if not records:
        raise BatchInvalidError(422, "batch has no records")
    if len(records) > max_records:
        raise BatchInvalidError(413, f"batch has {len(records)} records; the limit is {max_records} per batch")
    return records


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


def normalise_all(
    raw_records: Sequence[Any], agency: Agency, settings: IngestSettings, received_at: datetime
) -> list[Parsed]:
    zone = ZoneInfo(agency.timezone)
    skew = timedelta(seconds=settings.max_clock_skew_seconds)
    parsed: list[Parsed] = []
    for raw in raw_records:
        try:
            parsed.append(
                normalise_record(raw, status_map=agency.status_map, timezone=zone, now=received_at, max_skew=skew)
            )
        except RecordRejectedError as rejected:
            parsed.append(rejected)
    return parsed


@dataclass(frozen=True)
class AppliedBatch:
    """What applying a set of records did: per-record outcomes and counts by result."""

    outcomes: list[dict[str, Any]]
    counts: Counter[RecordResult]


async def apply_records(
    connection: Connection,
    settings: IngestSettings,
    agency: Agency,
    entries: Sequence[tuple[int, Parsed]],
    *,
    batch_id: str,
    received_at: datetime,
    origin: Origin = "feed",
) -> AppliedBatch:
    """Change detection and writes for records of one batch, in the caller's transaction (agency row locked).

    A feed's events are held instead of published while the agency is in a storm hold (or this batch starts one);
    an operator's override is never held: a person already decided.
    """
    records = [entry for _, entry in entries if not isinstance(entry, RecordRejectedError)]
    keys = {identifier.key for record in records for identifier in record.identifiers}
    snapshot = await subjects_store.load_snapshot(connection, agency.agency_id, keys, [r.record_id for r in records])
    plan = plan_batch(agency.agency_id, entries, snapshot, batch_id=batch_id, received_at=received_at, origin=origin)
    topic = settings.kafka.topic(CUSTODY_STATUS_CHANGED.name)
    events = [OutboxRow(topic, planned.key, planned.event_id, planned.value) for planned in plan.events]
    hold_id = None
    if origin == "feed":
        hold_id = await hold_if_storm(
            connection, settings, agency, planned=plan.events, topic=topic, received_at=received_at
        )
    await subjects_store.save_plan(
        connection,
        agency.agency_id,
        plan,
        batch_id=batch_id,
        received_at=received_at,
        events=[] if hold_id else events,
    )
    counts = Counter(outcome.result for outcome in plan.outcomes)
    await feed_health_store.add_feed_counts(connection, agency.agency_id, received_at, counts)
    held_reason = f"notices held for review (storm hold {hold_id})" if hold_id else None
    outcomes = [
        {
            "index": o.index,
            "record_id": o.record_id,
            "result": o.result.value,
            "reason": held_reason if o.event_id and held_reason else o.reason,
            "event_id": o.event_id,
        }
        for o in plan.outcomes
    ]
    return AppliedBatch(outcomes, counts)


def summary_of(counts: Counter[RecordResult]) -> dict[str, int]:
    return {result.value: counts.get(result, 0) for result in RecordResult}


@dataclass(frozen=True)
class StoredAnswer:
    """The answer to a batch: HTTP status and body, the same every time the batch is asked about."""

    status_code: int
    body: dict[str, Any]
    fresh: bool


async def receive_batch(
    pool: asyncpg.Pool,
    settings: IngestSettings,
    agency: Agency,
    *,
    body: bytes,
    body_sha256: str,
    idempotency_key: str | None,
    kind: Literal["json", "niem"] = "json",
) -> tuple[str, bool]:
    """Store the raw batch (committed before any processing); returns (batch id, whether it was already stored).

    Raises :class:`BatchInvalidError` (422) when the idempotency key was used for a different body.
    """
    async with pool.acquire() as connection:
        if idempotency_key is not None:
            existing = await batches_store.find_batch(connection, agency.agency_id, idempotency_key=idempotency_key)
            if existing is not None:
                return _same_body(existing, body_sha256), True
        batch_id = str(uuid.uuid4())
        stored = await batches_store.insert_batch(
            connection,
            batch_id=batch_id,
            agency_id=agency.agency_id,
            kind=kind,
            status="received",
            idempotency_key=idempotency_key,
            body_sha256=body_sha256,
            body=body,
        )
        if stored is None:  # a concurrent request with the same key won the race
            existing = await batches_store.find_batch(connection, agency.agency_id, idempotency_key=idempotency_key)
            if existing is None:
                raise RuntimeError("idempotency key conflict without a stored batch")
            return _same_body(existing, body_sha256), True
        async with connection.transaction():  # after the raw batch is safe, which never waits for another batch
            await note_feed_received(connection, settings, agency.agency_id, stored.received_at)
        return batch_id, False


def _same_body(existing: batches_store.StoredBatch, body_sha256: str) -> str:
    if existing.body_sha256 != body_sha256:
        raise BatchInvalidError(
            422, "Idempotency-Key was already used for a different body; use a new key for new data"
        )
    return existing.batch_id


async def process_batch(pool: asyncpg.Pool, settings: IngestSettings, batch_id: str) -> StoredAnswer:
    """Apply a stored JSON or NIEM batch in one transaction, or return the answer stored when it was applied before."""
    async with pool.acquire() as connection, connection.transaction():
        locked = await batches_store.lock_batch(connection, batch_id)
        if locked is None:
            raise LookupError(f"no batch {batch_id}")
        batch, body = locked
        if batch.status in ("processed", "failed"):
            return _answer_of(batch, fresh=False)
        agency = await agencies_store.get_agency(connection, batch.agency_id, for_update=True)
        if agency is None:
            raise LookupError(f"batch {batch_id} names unknown agency {batch.agency_id}")
        try:
            parsed = parse_stored_batch(batch.kind, body or b"", agency, settings, batch.received_at)
        except BatchInvalidError as invalid:
            await batches_store.finish_batch(
                connection,
                batch_id,
                status="failed",
                accepted=0,
                rejected=0,
                processed=0,
                result={"status_code": invalid.status_code, "detail": str(invalid)},
                error=str(invalid),
            )
            return StoredAnswer(invalid.status_code, {"detail": str(invalid)}, fresh=True)
        applied = await apply_records(
            connection, settings, agency, list(enumerate(parsed)), batch_id=batch_id, received_at=batch.received_at
        )
        answer = {
            "batch_id": batch_id,
            "agency_id": agency.agency_id,
            "received_at": batch.received_at.isoformat(),
            "summary": summary_of(applied.counts),
            "results": applied.outcomes,
        }
        await batches_store.finish_batch(
            connection,
            batch_id,
            status="processed",
            accepted=applied.counts[RecordResult.ACCEPTED],
            rejected=applied.counts[RecordResult.REJECTED],
            processed=len(parsed),
            result={"status_code": 200, "body": answer},
        )
    await refresh_metrics(pool, agency.agency_id, applied.counts)
    return StoredAnswer(200, answer, fresh=True)


def parse_stored_batch(
    kind: str, body: bytes, agency: Agency, settings: IngestSettings, received_at: datetime
) -> list[Parsed]:
    """The records of a stored batch, read by the format it arrived in: JSON records or a NIEM XML exchange."""
    if kind != "niem":
        return normalise_all(read_json_batch(body, settings.max_records_per_batch), agency, settings, received_at)
    try:
        document = niem.read_niem_document(body, status_map=agency.status_map, max_parts=settings.max_records_per_batch)
    except niem.NiemDocumentError as refused:
        raise BatchInvalidError(refused.status_code, str(refused)) from None
    mapped = iter(normalise_all([p for p in document.parts if isinstance(p, dict)], agency, settings, received_at))
    return [part if isinstance(part, RecordRejectedError) else next(mapped) for part in document.parts]


def _answer_of(batch: batches_store.StoredBatch, *, fresh: bool) -> StoredAnswer:
    result = batch.result or {}
    if batch.status == "failed":
        return StoredAnswer(int(result.get("status_code", 422)), {"detail": result.get("detail", batch.error)}, fresh)
    return StoredAnswer(int(result.get("status_code", 200)), dict(result.get("body", {})), fresh)


async def refresh_metrics(pool: asyncpg.Pool, agency_id: str, counts: Counter[RecordResult]) -> None:
    for result, count in counts.items():
        metrics.RECORDS.labels(agency_id, result.value).inc(count)
    async with pool.acquire() as connection:
        metrics.IN_CUSTODY.labels(agency_id).set(await subjects_store.in_custody_count(connection, agency_id))


async def recover_stored_batches(pool: asyncpg.Pool, settings: IngestSettings) -> int:
    """Apply JSON and NIEM batches stored but never processed (the service died mid-batch); returns how many."""
    older_than = datetime.now(UTC) - timedelta(seconds=settings.recovery_grace_seconds)
    async with pool.acquire() as connection:
        batch_ids = [
            batch_id
            for kind in ("json", "niem")
            for batch_id in await batches_store.batches_to_recover(connection, kind, older_than)
        ]
    for batch_id in batch_ids:
        try:
            answer = await process_batch(pool, settings, batch_id)
        except Exception:  # one broken batch must not keep the others from being recovered
            log.exception("could not apply stored batch %s", batch_id)
            continue
        if answer.fresh:
            log.info("recovered stored batch %s", batch_id)
    return len(batch_ids)
