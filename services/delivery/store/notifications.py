"""Notifications: one row per requested notice, with its schedule, its outcome and its attempt in flight."""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict

from services.delivery.domain import PAUSABLE_KINDS
from services.delivery.store import batch
from services.delivery.store.rows import columns_of
from shared.db import Connection
from shared.events import DeliveryStatus, NotificationRequested
from shared.vocabulary import normalise_identifier


class NotificationRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    notification_id: str
    event_id: str
    trace_id: str
    request: NotificationRequested
    contact_index: str
    status: DeliveryStatus
    outcome: str | None
    next_attempt_at: datetime | None
    in_flight_attempt_id: str | None
    lease_until: datetime | None
    attempt_count: int
    failure_count: int
    first_attempt_at: datetime | None
    repeat_until: datetime | None
    acknowledged_at: datetime | None
    parked_reason: str | None
    stop_reason: str | None
    replayed_from: str | None
    next_purpose: str | None
    created_at: datetime
    updated_at: datetime


_NOTIFICATION_COLUMNS = columns_of(NotificationRow)

rows_written: ContextVar[set[tuple[str, str]] | None] = ContextVar("rows_written", default=None)
"""While set (by ``attempts.bookkeeping_batch``), each (table, id) this module and ``attempts`` write is added."""


def note_written(table: str, *row_ids: str) -> None:
    written = rows_written.get()
    if written is not None:
        written.update((table, row_id) for row_id in row_ids)


def _notification(row: asyncpg.Record) -> NotificationRow:
    return NotificationRow.model_validate(dict(row))


@dataclass(frozen=True)
class NewNotification:
    """A requested notification ready to store, with what the consumer worked out for it."""

    request: NotificationRequested
    event_id: str
    trace_id: str
    contact_index: str
    next_attempt_at: datetime
    repeat_until: datetime | None


async def insert_notifications(connection: Connection, notifications: Sequence[NewNotification]) -> set[str]:
    """Insert many requested notifications in one statement; returns the ids that were new.

    Ids already stored (redeliveries) and ids repeated within the batch are skipped, as one by one.
    """
    await batch.flush(connection)
    columns: list[list[Any]] = [[] for _ in range(18)]
    for new in notifications:
        request, custody = new.request, new.request.custody
        values = (
            request.notification_id,
            new.event_id,
            new.trace_id,
            request.kind.value,
            request.subscription_id,
            request.agency_id,
            request.channel.value,
            request.urgency.value,
            request.language.value,
            request.contact_masked,
            new.contact_index,
            custody.identifier.kind.value if custody else None,
            normalise_identifier(custody.identifier.value) if custody else None,
            custody.custody_event_id if custody else None,
            custody.feed_received_at if custody else None,
            request.model_dump_json(),
            new.next_attempt_at,
            new.repeat_until,
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    rows = await connection.fetch(
        "INSERT INTO notifications (notification_id, event_id, trace_id, kind, subscription_id, agency_id, channel,"
        " urgency, language, contact_masked, contact_index, case_kind, case_value, custody_event_id,"
        " feed_received_at, request, next_attempt_at, repeat_until)"
        " SELECT n.notification_id, n.event_id, n.trace_id, n.kind, n.subscription_id, n.agency_id, n.channel,"
        " n.urgency, n.language, n.contact_masked, n.contact_index, n.case_kind, n.case_value, n.custody_event_id,"
        " n.feed_received_at, n.request::jsonb, n.next_attempt_at, n.repeat_until"
        " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],"
        " $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[],"
        " $15::timestamptz[], $16::text[], $17::timestamptz[], $18::timestamptz[])"
        " WITH ORDINALITY AS n (notification_id, event_id, trace_id, kind, subscription_id, agency_id, channel,"
        " urgency, language, contact_masked, contact_index, case_kind, case_value, custody_event_id,"
        " feed_received_at, request, next_attempt_at, repeat_until, position)"
        " ORDER BY n.position"
        " ON CONFLICT (notification_id) DO NOTHING RETURNING notification_id",
        *columns,
    )
    return {row["notification_id"] for row in rows}


async def get_notification(
    connection: Connection, notification_id: str, *, for_update: bool = False
) -> NotificationRow | None:
    await batch.flush(connection)
    lock = " FOR UPDATE" if for_update else ""
    row = await connection.fetchrow(
        f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications WHERE notification_id = $1{lock}",  # noqa: S608
        notification_id,
    )
    return None if row is None else _notification(row)


LOCK_DUE_QUERY = (
    f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications n"  # noqa: S608
    " WHERE n.due_at <= $1"
    "   AND (n.kind <> ALL($3::text[]) OR NOT EXISTS ("
    "        SELECT 1 FROM agencies a WHERE a.agency_id = n.agency_id AND a.notices_paused))"
    " ORDER BY n.due_at LIMIT $2 FOR UPDATE OF n SKIP LOCKED"
)
"""$1 now, $2 how many, $3 the kinds an agency's pause holds back."""


async def lock_due(connection: Connection, now: datetime, limit: int) -> list[NotificationRow]:
    """Lock notifications whose next attempt is due, or whose in-flight attempt outlived its lease (a crash).

    Both are ``due_at`` (a generated column), so this is a range scan of its index, oldest first. ``SKIP LOCKED``:
    several dispatchers (replicas) share the work without waiting on each other. Custody notices of an agency that
    paused its notices are held back.
    """
    await batch.flush(connection)
    rows = await connection.fetch(LOCK_DUE_QUERY, now, limit, sorted(kind.value for kind in PAUSABLE_KINDS))
    return [_notification(row) for row in rows]


async def update_notification(connection: Connection, notification_id: str, **changes: Any) -> None:
    """Set the given columns (names are ours, never user input) and touch ``updated_at``."""
    note_written("notifications", notification_id)
    if batch.is_holding():
        await batch.update(connection, batch.RowUpdate("notifications", notification_id, changes))
        return
    names = list(changes)
    assignments = ", ".join(f"{name} = ${index}" for index, name in enumerate(names, start=2))
    await connection.execute(
        f"UPDATE notifications SET {assignments}, updated_at = now() WHERE notification_id = $1",  # noqa: S608
        notification_id,
        *(changes[name] for name in names),
    )


async def start_attempts(
    connection: Connection, started: Sequence[tuple[str, str, int, datetime]], lease_until: datetime
) -> None:
    """Put each (notification id, attempt id, attempt number, first attempt at) in flight, leased, in one statement."""
    await batch.flush(connection)
    if not started:
        return
    note_written("notifications", *(notification_id for notification_id, _, _, _ in started))
    await connection.execute(
        "UPDATE notifications n SET in_flight_attempt_id = s.attempt_id, lease_until = $5, attempt_count = s.number,"
        " first_attempt_at = s.first_attempt_at, next_attempt_at = NULL, next_purpose = NULL, status = 'sending',"
        " updated_at = now()"
        " FROM unnest($1::text[], $2::text[], $3::int[], $4::timestamptz[])"
        " AS s (notification_id, attempt_id, number, first_attempt_at) WHERE n.notification_id = s.notification_id",
        [notification_id for notification_id, _, _, _ in started],
        [attempt_id for _, attempt_id, _, _ in started],
        [number for _, _, number, _ in started],
        [first_attempt_at for _, _, _, first_attempt_at in started],
        lease_until,
    )


async def reopen_for_replay(connection: Connection, notification_id: str, *, replayed_from: str, now: datetime) -> bool:
    """An operator replayed this parked notice: make it due again for one new attempt; False if it may not be.

    Only a notice delivery gave up on (``failed``) and not already reopened by this same dead letter: a delivered,
    acknowledged or stopped one (by its subscriber or an operator) stays as it is, and a redelivered replay is a
    no-op. The retry budget starts afresh.
    """
    await batch.flush(connection)
    note_written("notifications", notification_id)
    reopened = await connection.fetchval(
        "UPDATE notifications SET outcome = NULL, status = 'created', next_attempt_at = $3, failure_count = 0,"
        " first_attempt_at = $3, parked_reason = NULL, dead_lettered_at = NULL, replayed_from = $2,"
        " next_purpose = 'replay', updated_at = now()"
        " WHERE notification_id = $1 AND outcome = 'failed' AND in_flight_attempt_id IS NULL"
        " AND replayed_from IS DISTINCT FROM $2 RETURNING true",
        notification_id,
        replayed_from,
        now,
    )
    return bool(reopened)


async def seal_subject(
    connection: Connection, agency_id: str, identifiers: Sequence[tuple[str, str]], sealed_at: datetime
) -> list[str]:
    """Remember a sealed subject by each (kind, normalised value); returns its notices still open, locked."""
    await batch.flush(connection)
    kinds, values = [kind for kind, _ in identifiers], [value for _, value in identifiers]
    await connection.execute(
        "INSERT INTO sealed_subjects (agency_id, case_kind, case_value, sealed_at)"
        " SELECT $1, kind, value, $4 FROM unnest($2::text[], $3::text[]) AS i (kind, value) ON CONFLICT DO NOTHING",
        agency_id,
        kinds,
        values,
        sealed_at,
    )
    rows = await connection.fetch(
        "SELECT notification_id FROM notifications n JOIN unnest($2::text[], $3::text[]) AS i (kind, value)"
        " ON n.case_kind = i.kind AND n.case_value = i.value"
        " WHERE n.agency_id = $1 AND n.outcome IS NULL ORDER BY notification_id FOR UPDATE OF n",
        agency_id,
        kinds,
        values,
    )
    return [row["notification_id"] for row in rows]


async def sealed_among(connection: Connection, notification_ids: Sequence[str]) -> list[str]:
    """Which of these open notices are about a sealed subject (locked for the caller's change)."""
    await batch.flush(connection)
    rows = await connection.fetch(
        "SELECT n.notification_id FROM notifications n JOIN sealed_subjects s"
        " ON s.agency_id = n.agency_id AND s.case_kind = n.case_kind AND s.case_value = n.case_value"
        " WHERE n.notification_id = ANY($1::text[]) AND n.outcome IS NULL ORDER BY n.notification_id FOR UPDATE OF n",
        list(notification_ids),
    )
    return [row["notification_id"] for row in rows]


async def open_notifications_of(
    connection: Connection, subscription_id: str, *, channel: str | None = None, urgent_only: bool = False
) -> list[str]:
    """Ids of a subscription's notifications still waiting for an attempt (locked for the caller's change)."""
    await batch.flush(connection)
    rows = await connection.fetch(
        "SELECT notification_id FROM notifications WHERE subscription_id = $1 AND outcome IS NULL"
        " AND ($2::text IS NULL OR channel = $2) AND (NOT $3 OR urgency = 'urgent')"
        " ORDER BY notification_id FOR UPDATE",
        subscription_id,
        channel,
        urgent_only,
    )
    return [row["notification_id"] for row in rows]


async def notifications_to_dead_letter(connection: Connection, limit: int) -> list[NotificationRow]:
    await batch.flush(connection)
    rows = await connection.fetch(
        f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications"  # noqa: S608
        " WHERE outcome = 'failed' AND dead_lettered_at IS NULL ORDER BY created_at LIMIT $1"
        " FOR UPDATE SKIP LOCKED",
        limit,
    )
    return [_notification(row) for row in rows]


async def search_notifications(
    connection: Connection,
    *,
    subscription_id: str | None,
    agency_id: str | None,
    case: str | None,
    since: datetime | None,
    until: datetime | None,
    status: str | None,
    limit: int,
) -> list[NotificationRow]:
    await batch.flush(connection)
    rows = await connection.fetch(
        f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications"  # noqa: S608
        " WHERE ($1::text IS NULL OR subscription_id = $1) AND ($2::text IS NULL OR agency_id = $2)"
        " AND ($3::text IS NULL OR case_value = $3) AND ($4::timestamptz IS NULL OR created_at >= $4)"
        " AND ($5::timestamptz IS NULL OR created_at < $5) AND ($6::text IS NULL OR status = $6)"
        " ORDER BY created_at DESC, notification_id LIMIT $7",
        subscription_id,
        agency_id,
        case,
        since,
        until,
        status,
        limit,
    )
    return [_notification(row) for row in rows]


async def count_retrying(connection: Connection) -> int:
    """Notices waiting to retry a temporary failure (read from a small partial index)."""
    await batch.flush(connection)
    count: Any = await connection.fetchval(
        "SELECT count(*) FROM notifications WHERE outcome IS NULL AND failure_count > 0"
    )
    return int(count or 0)
