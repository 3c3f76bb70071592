"""Attempts: every hand-off of a notice to a provider, with what identifies it there and how it ended."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict

from services.delivery.store import batch, notifications
from services.delivery.store.notifications import NotificationRow
from services.delivery.store.rows import columns_of
from shared.db import Connection
from shared.events import DeliveryStatus
from shared.vocabulary import Channel


class AttemptRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    attempt_id: str
    notification_id: str
    number: int
    purpose: str
    channel: Channel
    contact_masked: str
    provider: str | None
    provider_message_id: str | None
    status: DeliveryStatus
    error_code: str | None
    detail: str | None
    created_at: datetime
    handed_off_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime
    calling_at: datetime | None
    body_fingerprint: str | None
    email_message_id: str | None


_ATTEMPT_COLUMNS = columns_of(AttemptRow)


def _attempt(row: asyncpg.Record) -> AttemptRow:
    return AttemptRow.model_validate(dict(row))


_LOCK_WITH_NOTIFICATION_QUERY = (
    "SELECT "  # noqa: S608 - column names come from the models
    + ", ".join(
        [f"a.{name} AS a_{name}" for name in AttemptRow.model_fields]
        + [f"n.{name} AS n_{name}" for name in NotificationRow.model_fields]
    )
    + " FROM attempts a JOIN notifications n ON n.notification_id = a.notification_id WHERE a.attempt_id = ANY($1)"
    " ORDER BY a.attempt_id FOR UPDATE OF a, n"
)

_locked_ahead: ContextVar[dict[str, tuple[AttemptRow, NotificationRow]] | None] = ContextVar(
    "locked_ahead", default=None
)


def _locked_pair(row: asyncpg.Record) -> tuple[AttemptRow, NotificationRow]:
    attempt = AttemptRow.model_validate({name: row[f"a_{name}"] for name in AttemptRow.model_fields})
    notification = NotificationRow.model_validate({name: row[f"n_{name}"] for name in NotificationRow.model_fields})
    return attempt, notification


@contextlib.asynccontextmanager
async def bookkeeping_batch(connection: Connection, locked_attempt_ids: Sequence[str]) -> AsyncIterator[None]:
    """A batch of bookkeeping in one transaction: these attempts locked with their notifications in one query (in
    attempt-id order), and the updates of both tables held and written set-based at the end (see ``batch``).

    Within, :func:`lock_with_notification` answers each locked attempt from that query once, as long as neither of
    its rows was written since; any other call reads (and locks) afresh.
    """
    pairs: list[tuple[AttemptRow, NotificationRow]] = []
    if locked_attempt_ids:
        rows = await connection.fetch(_LOCK_WITH_NOTIFICATION_QUERY, sorted(set(locked_attempt_ids)))
        pairs = [_locked_pair(row) for row in rows]
    ahead = _locked_ahead.set({attempt.attempt_id: (attempt, notification) for attempt, notification in pairs})
    written = notifications.rows_written.set(set())
    try:
        async with batch.holding(connection):
            yield
    finally:
        notifications.rows_written.reset(written)
        _locked_ahead.reset(ahead)


def _taken_ahead(attempt_id: str) -> tuple[AttemptRow, NotificationRow] | None:
    ahead, written = _locked_ahead.get(), notifications.rows_written.get()
    if not ahead or written is None or attempt_id not in ahead:
        return None
    attempt, notification = ahead.pop(attempt_id)
    if ("attempts", attempt_id) in written or ("notifications", notification.notification_id) in written:
        return None
    return attempt, notification


async def lock_with_notification(connection: Connection, attempt_id: str) -> tuple[AttemptRow, NotificationRow] | None:
    """An attempt and its notification, both locked for the caller's change, in one round trip (none when
    :func:`bookkeeping_batch` already read them)."""
    ahead = _taken_ahead(attempt_id)
    if ahead is not None:
        return ahead
    await batch.flush(connection)
    row = await connection.fetchrow(_LOCK_WITH_NOTIFICATION_QUERY, [attempt_id])
    return None if row is None else _locked_pair(row)


@dataclass(frozen=True)
class NewAttempt:
    """An attempt a claim records (status ``sending``)."""

    attempt_id: str
    notification_id: str
    number: int
    purpose: str
    channel: str
    contact_masked: str


async def insert_attempts(connection: Connection, new: Sequence[NewAttempt], now: datetime) -> None:
    """Record a claim's attempts in one statement."""
    await batch.flush(connection)
    if not new:
        return
    await connection.execute(
        "INSERT INTO attempts (attempt_id, notification_id, number, purpose, channel, contact_masked, status,"
        " created_at, updated_at)"
        " SELECT a.attempt_id, a.notification_id, a.number, a.purpose, a.channel, a.contact_masked, 'sending', $7, $7"
        " FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[], $6::text[])"
        " AS a (attempt_id, notification_id, number, purpose, channel, contact_masked)",
        [attempt.attempt_id for attempt in new],
        [attempt.notification_id for attempt in new],
        [attempt.number for attempt in new],
        [attempt.purpose for attempt in new],
        [attempt.channel for attempt in new],
        [attempt.contact_masked for attempt in new],
        now,
    )


async def record_calling(
    connection: Connection,
    attempt_id: str,
    now: datetime,
    *,
    body_fingerprint: str | None = None,
    email_message_id: str | None = None,
) -> None:
    """The provider call is about to begin: what a take-over needs to find the message, committed first."""
    notifications.note_written("attempts", attempt_id)
    if batch.is_holding():
        marks = {"calling_at": now, "body_fingerprint": body_fingerprint, "email_message_id": email_message_id}
        await batch.update(connection, batch.RowUpdate("attempts", attempt_id, marks | {"updated_at": now}))
        return
    await connection.execute(
        "UPDATE attempts SET calling_at = $2, body_fingerprint = $3, email_message_id = $4, updated_at = $2"
        " WHERE attempt_id = $1",
        attempt_id,
        now,
        body_fingerprint,
        email_message_id,
    )


async def get_attempt(connection: Connection, attempt_id: str, *, for_update: bool = False) -> AttemptRow | None:
    await batch.flush(connection)
    lock = " FOR UPDATE" if for_update else ""
    row = await connection.fetchrow(
        f"SELECT {_ATTEMPT_COLUMNS} FROM attempts WHERE attempt_id = $1{lock}",  # noqa: S608
        attempt_id,
    )
    return None if row is None else _attempt(row)


async def find_attempt_by_provider_message(connection: Connection, provider_message_id: str) -> str | None:
    await batch.flush(connection)
    value: Any = await connection.fetchval(
        "SELECT attempt_id FROM attempts WHERE provider_message_id = $1 LIMIT 1", provider_message_id
    )
    return None if value is None else str(value)


async def update_attempt(connection: Connection, attempt_id: str, now: datetime, **changes: Any) -> None:
    notifications.note_written("attempts", attempt_id)
    if batch.is_holding():
        await batch.update(connection, batch.RowUpdate("attempts", attempt_id, {"updated_at": now} | changes))
        return
    names = list(changes)
    assignments = "".join(f", {name} = ${index}" for index, name in enumerate(names, start=3))
    await connection.execute(
        f"UPDATE attempts SET updated_at = $2{assignments} WHERE attempt_id = $1",  # noqa: S608
        attempt_id,
        now,
        *(changes[name] for name in names),
    )


async def update_with_notification(
    connection: Connection,
    attempt_id: str,
    now: datetime,
    *,
    changes: dict[str, Any],
    notification_id: str,
    notification_changes: dict[str, Any],
) -> None:
    """:func:`update_attempt` and ``notifications.update_notification`` in one statement (one round trip); either
    may be empty. In a :func:`bookkeeping_batch`, held with the others of its shape."""
    if batch.is_holding() and changes and notification_changes:
        notifications.note_written("attempts", attempt_id)
        notifications.note_written("notifications", notification_id)
        await batch.update(
            connection,
            batch.RowUpdate("attempts", attempt_id, {"updated_at": now} | changes),
            batch.RowUpdate("notifications", notification_id, notification_changes),
        )
        return
    if not notification_changes:
        if changes:
            await update_attempt(connection, attempt_id, now, **changes)
        return
    if not changes:
        await notifications.update_notification(connection, notification_id, **notification_changes)
        return
    notifications.note_written("attempts", attempt_id)
    notifications.note_written("notifications", notification_id)
    names, notification_names = list(changes), list(notification_changes)
    assignments = "".join(f", {name} = ${index}" for index, name in enumerate(names, start=4))
    first = 4 + len(names)
    notification_assignments = "".join(
        f"{name} = ${index}, " for index, name in enumerate(notification_names, start=first)
    )
    await connection.execute(
        f"WITH attempt AS (UPDATE attempts SET updated_at = $2{assignments} WHERE attempt_id = $1)"  # noqa: S608
        f" UPDATE notifications SET {notification_assignments}updated_at = now() WHERE notification_id = $3",
        attempt_id,
        now,
        notification_id,
        *(changes[name] for name in names),
        *(notification_changes[name] for name in notification_names),
    )


async def attempts_of(connection: Connection, notification_ids: list[str]) -> dict[str, list[AttemptRow]]:
    await batch.flush(connection)
    rows = await connection.fetch(
        f"SELECT {_ATTEMPT_COLUMNS} FROM attempts WHERE notification_id = ANY($1::text[])"  # noqa: S608
        " ORDER BY notification_id, number",
        notification_ids,
    )
    found: dict[str, list[AttemptRow]] = {notification_id: [] for notification_id in notification_ids}
    for row in rows:
        found[row["notification_id"]].append(_attempt(row))
    return found


async def attempts_awaiting_receipt(
    connection: Connection,
    *,
    handed_off_before: datetime,
    handed_off_after: datetime,
    checked_before: datetime,
    channels: Sequence[Channel],
    limit: int,
) -> list[AttemptRow]:
    """Attempts on these channels handed off a while ago whose final receipt never came (a missed status callback).

    The channels are spelled out in the SQL (they are our vocabulary, never input) so that the partial index
    ``attempts_awaiting_receipt`` (whose predicate names them: a new channel's migration adds it) serves the query.
    """
    await batch.flush(connection)
    named = ", ".join(f"'{Channel(channel).value}'" for channel in sorted(channels))
    rows = await connection.fetch(
        f"SELECT {_ATTEMPT_COLUMNS} FROM attempts"  # noqa: S608
        f" WHERE status IN ('sending', 'sent') AND channel IN ({named}) AND provider_message_id IS NOT NULL"
        " AND handed_off_at < $1 AND handed_off_at > $2"
        " AND (last_checked_at IS NULL OR last_checked_at < $3) ORDER BY handed_off_at LIMIT $4",
        handed_off_before,
        handed_off_after,
        checked_before,
        limit,
    )
    return [_attempt(row) for row in rows]


async def known_provider_messages(connection: Connection, provider_message_ids: Sequence[str]) -> set[str]:
    """Which of these provider ids (call SIDs) some attempt already recorded."""
    await batch.flush(connection)
    rows = await connection.fetch(
        "SELECT provider_message_id FROM attempts WHERE provider_message_id = ANY($1::text[])",
        list(provider_message_ids),
    )
    return {row["provider_message_id"] for row in rows}
