"""Orchestration: raw batch -> domain decisions -> store and outbox, each in the right transaction.

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

from services.ingest import guards, metrics, niem, store
from services.ingest.domain import (
    EVENT_NAMESPACE,
    EVENT_SOURCE,
    Identifier,
    Origin,
    Parsed,
    RecordRejectedError,
    RecordResult,
    event_key,
    feed_is_stale,
    normalise_record,
    plan_batch,
    sorted_identifiers,
)
from services.ingest.settings import IngestSettings
from services.ingest.store import Agency
from shared.db import Connection
from shared.events import AgencyProfile, FeedSilence, SubjectSealed, new_event
from shared.outbox import OutboxRow, enqueue
from shared.topics import AGENCY_PROFILE, CUSTODY_STATUS_CHANGED, FEED_SILENCE, OPS_ALERT, SUBJECT_SEALED

log = logging.getLogger(__name__)

SOURCE = EVENT_SOURCE


class BatchInvalidError(ValueError):
    """The batch as a whole cannot be read; ``status_code`` is the HTTP answer (400, 413, 422)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


# --- agencies ---------------------------------------------------------------------------------------------------


def profile_of(agency: Agency) -> AgencyProfile:
    return AgencyProfile(
        agency_id=agency.agency_id,
        name=agency.name,
        timezone=agency.timezone,
        contact_phone=agency.contact_phone,
        victim_services_phone=agency.victim_services_phone,
        victim_services_url=agency.victim_services_url,
        expected_feed_interval_minutes=agency.expected_feed_interval_minutes,
        notices_paused=agency.notices_paused,
        active=agency.active,
        public_name_search=agency.public_name_search,
        resources=agency.resources,
        reminders=agency.reminders,
        updated_at=agency.updated_at,
    )


async def publish_profile(connection: Connection, settings: IngestSettings, agency: Agency) -> None:
    event = new_event(profile_of(agency), source=SOURCE, subject=agency.agency_id)
    await enqueue(connection, settings.kafka.topic(AGENCY_PROFILE.name), agency.agency_id, event)


async def create_agency(connection: Connection, settings: IngestSettings, values: dict[str, Any]) -> Agency | None:
    """Create an agency and publish its profile; None when the id is taken."""
    async with connection.transaction():
        agency = await store.insert_agency(connection, values)
        if agency is not None:
            await publish_profile(connection, settings, agency)
        return agency


async def update_agency(
    connection: Connection, settings: IngestSettings, agency_id: str, changes: dict[str, Any]
) -> Agency | None:
    async with connection.transaction():
        agency = await store.update_agency(connection, agency_id, changes)
        if agency is not None:
            await publish_profile(connection, settings, agency)
        return agency


# --- JSON batches -----------------------------------------------------------------------------------------------


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
    snapshot = await store.load_snapshot(connection, agency.agency_id, keys, [r.record_id for r in records])
    plan = plan_batch(agency.agency_id, entries, snapshot, batch_id=batch_id, received_at=received_at, origin=origin)
    topic = settings.kafka.topic(CUSTODY_STATUS_CHANGED.name)
    events = [OutboxRow(topic, planned.key, planned.event_id, planned.value) for planned in plan.events]
    hold_id = None
    if origin == "feed":
        hold_id = await guards.hold_if_storm(
            connection, settings, agency, planned=plan.events, topic=topic, received_at=received_at
        )
    await store.save_plan(
        connection,
        agency.agency_id,
        plan,
        batch_id=batch_id,
        received_at=received_at,
        events=[] if hold_id else events,
    )
    counts = Counter(outcome.result for outcome in plan.outcomes)
    await store.add_feed_counts(connection, agency.agency_id, received_at, counts)
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


class OverrideRejectedError(ValueError):
    """The override cannot be applied (its identifiers name two subjects); the message says why."""


async def apply_override(
    pool: asyncpg.Pool, settings: IngestSettings, agency_id: str, request: guards.OverrideRequest
) -> store.StoredOverride | None:
    """Apply an operator's status like a feed record (never held); None when the agency is unknown."""
    override_id = str(uuid.uuid4())
    record = guards.override_record(override_id, request)
    now = datetime.now(UTC)
    async with pool.acquire() as connection, connection.transaction():
        agency = await store.get_agency(connection, agency_id, for_update=True)
        if agency is None:
            return None
        applied = await apply_records(
            connection,
            settings,
            agency,
            [(0, record)],
            batch_id=override_id,
            received_at=now,
            origin="operator_override",
        )
        outcome = applied.outcomes[0]
        subject_id = await connection.fetchval(
            "SELECT subject_id::text FROM custody_records WHERE agency_id = $1 AND record_id = $2",
            agency_id,
            record.record_id,
        )
        if subject_id is None:
            raise OverrideRejectedError(str(outcome["reason"]))
        override = store.StoredOverride(
            override_id=override_id,
            agency_id=agency_id,
            subject_id=str(subject_id),
            result=guards.RESULT_OF_OVERRIDE[RecordResult(outcome["result"])],
            event_id=outcome["event_id"],
            status=record.status.value,
            effective_at=record.effective_at,
            operator=request.operator,
            reason=request.reason,
            created_at=now,
        )
        await store.insert_override(connection, override)
    metrics.OVERRIDES.labels(agency_id, override.result).inc()
    log.warning(
        "operator override %s of agency %s: %s (%s) by %s",
        override_id,
        agency_id,
        override.status,
        override.result,
        request.operator,
    )
    return override


def summary_of(counts: Counter[RecordResult]) -> dict[str, int]:
    return {result.value: counts.get(result, 0) for result in RecordResult}


@dataclass(frozen=True)
class StoredAnswer:
    """The answer to a batch: HTTP status and body, the same every time the batch is asked about."""

    status_code: int
    body: dict[str, Any]
    fresh: bool


async def receive_json_batch(
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
            existing = await store.find_batch(connection, agency.agency_id, idempotency_key=idempotency_key)
            if existing is not None:
                return _same_body(existing, body_sha256), True
        batch_id = str(uuid.uuid4())
        stored = await store.insert_batch(
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
            existing = await store.find_batch(connection, agency.agency_id, idempotency_key=idempotency_key)
            if existing is None:
                raise RuntimeError("idempotency key conflict without a stored batch")
            return _same_body(existing, body_sha256), True
        async with connection.transaction():  # after the raw batch is safe, which never waits for another batch
            await note_feed_received(connection, settings, agency.agency_id, stored.received_at)
        return batch_id, False


def _same_body(existing: store.StoredBatch, body_sha256: str) -> str:
    if existing.body_sha256 != body_sha256:
        raise BatchInvalidError(
            422, "Idempotency-Key was already used for a different body; use a new key for new data"
        )
    return existing.batch_id


async def process_json_batch(pool: asyncpg.Pool, settings: IngestSettings, batch_id: str) -> StoredAnswer:
    """Apply a stored JSON batch in one transaction, or return the answer stored when it was applied before."""
    async with pool.acquire() as connection, connection.transaction():
        locked = await store.lock_batch(connection, batch_id)
        if locked is None:
            raise LookupError(f"no batch {batch_id}")
        batch, body = locked
        if batch.status in ("processed", "failed"):
            return _answer_of(batch, fresh=False)
        agency = await store.get_agency(connection, batch.agency_id, for_update=True)
        if agency is None:
            raise LookupError(f"batch {batch_id} names unknown agency {batch.agency_id}")
        try:
            parsed = parse_stored_batch(batch.kind, body or b"", agency, settings, batch.received_at)
        except BatchInvalidError as invalid:
            await store.finish_batch(
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
        await store.finish_batch(
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


def _answer_of(batch: store.StoredBatch, *, fresh: bool) -> StoredAnswer:
    result = batch.result or {}
    if batch.status == "failed":
        return StoredAnswer(int(result.get("status_code", 422)), {"detail": result.get("detail", batch.error)}, fresh)
    return StoredAnswer(int(result.get("status_code", 200)), dict(result.get("body", {})), fresh)


async def refresh_metrics(pool: asyncpg.Pool, agency_id: str, counts: Counter[RecordResult]) -> None:
    for result, count in counts.items():
        metrics.RECORDS.labels(agency_id, result.value).inc(count)
    async with pool.acquire() as connection:
        metrics.IN_CUSTODY.labels(agency_id).set(await store.in_custody_count(connection, agency_id))


async def recover_json_batches(pool: asyncpg.Pool, settings: IngestSettings) -> int:
    """Apply JSON batches stored but never processed (the service died mid-batch); returns how many."""
    older_than = datetime.now(UTC) - timedelta(seconds=settings.recovery_grace_seconds)
    async with pool.acquire() as connection:
        batch_ids = [
            batch_id
            for kind in ("json", "niem")
            for batch_id in await store.batches_to_recover(connection, kind, older_than)
        ]
    for batch_id in batch_ids:
        try:
            answer = await process_json_batch(pool, settings, batch_id)
        except Exception:  # one broken batch must not keep the others from being recovered
            log.exception("could not apply stored batch %s", batch_id)
            continue
        if answer.fresh:
            log.info("recovered stored batch %s", batch_id)
    return len(batch_ids)


# --- feed health ------------------------------------------------------------------------------------------------


async def note_feed_received(connection: Connection, settings: IngestSettings, agency_id: str, at: datetime) -> None:
    """Record that a feed arrived; if the feed had been flagged quiet, say it recovered (once)."""
    metrics.LAST_FEED.labels(agency_id).set(at.timestamp())
    before = await connection.fetchrow(
        "UPDATE agencies a SET last_feed_at = greatest(a.last_feed_at, $2), feed_stale = false,"
        " silence_notified_for = NULL"
        " FROM (SELECT feed_stale, silence_notified_for FROM agencies WHERE agency_id = $1 FOR NO KEY UPDATE) AS before"
        " WHERE a.agency_id = $1 RETURNING before.feed_stale, before.silence_notified_for",
        agency_id,
        at,
    )
    was_stale = before is not None and before["feed_stale"]
    if before is not None and before["silence_notified_for"] is not None:
        await _enqueue_feed_silence(
            connection, settings, agency_id, state="restored", silent_since=before["silence_notified_for"], at=at
        )
    if was_stale:
        event = guards.ops_alert(
            "feed_recovered", agency_id, f"feed of {agency_id} is arriving again", at, at.isoformat()
        )
        await enqueue(connection, settings.kafka.topic(OPS_ALERT.name), agency_id, event)
        metrics.FEED_STALE.labels(agency_id).set(0)


async def _enqueue_feed_silence(
    connection: Connection,
    settings: IngestSettings,
    agency_id: str,
    *,
    state: Literal["silent", "restored"],
    silent_since: datetime,
    at: datetime,
) -> None:
    silence_id = str(uuid.uuid5(EVENT_NAMESPACE, f"silence:{agency_id}/{silent_since.isoformat()}"))
    silence = FeedSilence(agency_id=agency_id, silence_id=silence_id, state=state, silent_since=silent_since, at=at)
    event = new_event(
        silence,
        source=SOURCE,
        subject=agency_id,
        event_id=str(uuid.uuid5(EVENT_NAMESPACE, f"{silence_id}/{state}")),
        at=at,
    )
    await enqueue(connection, settings.kafka.topic(FEED_SILENCE.name), agency_id, event)
    if state == "silent":
        metrics.SILENCE_NOTICES.labels(agency_id).inc()
        log.warning("feed of %s silent since %s: its subscribers are told", agency_id, silent_since.isoformat())
    else:
        log.info("feed of %s is back: subscribers told of the silence are told too", agency_id)


async def tell_subscribers_of_silence(
    connection: Connection, settings: IngestSettings, agency: Agency, now: datetime
) -> bool:
    """Once per outage, when the agency opted in and its feed is silent beyond the notice time; True if told now."""
    after = agency.silence_notice_after_minutes
    silent_since = agency.last_feed_at or agency.created_at
    if not agency.active or after is None or agency.silence_notified_for == silent_since:
        return False
    if not feed_is_stale(agency.last_feed_at, agency.created_at, after, now):
        return False
    async with connection.transaction():
        locked = await store.get_agency(connection, agency.agency_id, for_update=True)
        if locked is None or locked.last_feed_at != agency.last_feed_at or locked.silence_notified_for == silent_since:
            return False
        await connection.execute(
            "UPDATE agencies SET silence_notified_for = $2 WHERE agency_id = $1", agency.agency_id, silent_since
        )
        await _enqueue_feed_silence(
            connection, settings, agency.agency_id, state="silent", silent_since=silent_since, at=now
        )
    return True


async def check_feed_health(pool: asyncpg.Pool, settings: IngestSettings, now: datetime | None = None) -> list[str]:
    """Flag agencies whose feed went quiet (one ``feed_stale`` alert each); returns the ids flagged now.

    Agencies that opted in also get their subscribers told once the silence outlasts their notice time.
    """
    now = now or datetime.now(UTC)
    flagged: list[str] = []
    async with pool.acquire() as connection:
        for agency in await store.list_agencies(connection):
            await tell_subscribers_of_silence(connection, settings, agency, now)
            stale = agency.active and feed_is_stale(
                agency.last_feed_at, agency.created_at, agency.expected_feed_interval_minutes, now
            )
            metrics.FEED_STALE.labels(agency.agency_id).set(1 if stale else 0)
            metrics.IN_CUSTODY.labels(agency.agency_id).set(await store.in_custody_count(connection, agency.agency_id))
            if agency.last_feed_at is not None:
                metrics.LAST_FEED.labels(agency.agency_id).set(agency.last_feed_at.timestamp())
            if not stale or agency.feed_stale:
                continue
            async with connection.transaction():
                locked = await store.get_agency(connection, agency.agency_id, for_update=True)
                if locked is None or locked.feed_stale or locked.last_feed_at != agency.last_feed_at:
                    continue
                await store.set_feed_stale(connection, agency.agency_id, True)
                since = agency.last_feed_at.isoformat() if agency.last_feed_at else "never"
                message = (
                    f"no feed from {agency.name} ({agency.agency_id}) for more than "
                    f"{agency.expected_feed_interval_minutes} min (last: {since})"
                )
                event = guards.ops_alert("feed_stale", agency.agency_id, message, now, now.isoformat())
                await enqueue(connection, settings.kafka.topic(OPS_ALERT.name), agency.agency_id, event)
                flagged.append(agency.agency_id)
                log.warning("feed stale: %s", message)
    return flagged


# --- sealing ----------------------------------------------------------------------------------------------------


class SealConflictError(ValueError):
    """The identifiers name more than one subject."""


@dataclass(frozen=True)
class Sealed:
    subject_id: str
    sealed_at: datetime
    identifiers: list[Identifier]


async def seal_subject(
    pool: asyncpg.Pool, settings: IngestSettings, agency_id: str, identifiers: Sequence[Identifier]
) -> Sealed:
    """Seal the subject the identifiers name (creating it if unknown, so later records are caught too)."""
    now = datetime.now(UTC)
    keys = {identifier.key for identifier in identifiers}
    async with pool.acquire() as connection, connection.transaction():
        await store.get_agency(connection, agency_id, for_update=True)
        owners = await store.find_subjects_by_identifiers(connection, agency_id, keys)
        if len(owners) > 1:
            raise SealConflictError("these identifiers belong to different subjects; seal each subject separately")
        if owners:
            subject_id = owners[0]
        else:
            subject_id = str(uuid.uuid5(EVENT_NAMESPACE, f"sealed:{agency_id}/{sorted(keys)}"))
            await store.create_sealed_subject(connection, agency_id, subject_id, now)
        await store.add_identifiers(connection, agency_id, subject_id, identifiers)
        sealed_at = await store.seal_subject(connection, subject_id, now)
        all_identifiers = await store.subject_identifiers(connection, subject_id)
        if sealed_at == now:
            payload = SubjectSealed(
                agency_id=agency_id,
                subject_id=subject_id,
                identifiers=sorted_identifiers(all_identifiers),
                sealed_at=sealed_at,
            )
            key = event_key(agency_id, subject_id)
            event = new_event(
                payload,
                source=SOURCE,
                subject=key,
                event_id=str(uuid.uuid5(EVENT_NAMESPACE, f"sealed:{key}")),
                at=now,
            )
            await enqueue(connection, settings.kafka.topic(SUBJECT_SEALED.name), key, event)
    async with pool.acquire() as connection:
        metrics.IN_CUSTODY.labels(agency_id).set(await store.in_custody_count(connection, agency_id))
    return Sealed(subject_id, sealed_at, all_identifiers)
