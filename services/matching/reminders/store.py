"""Reminders of a scheduled release or court date (``scheduled_notices``), one per subscription, date and time."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from services.matching.reminders.domain import Reminder
from shared.db import Connection
from shared.events import NotificationKind

REMINDER_COLUMNS = ", ".join(Reminder.model_fields)
REMINDER_ARRAYS = ", ".join(
    f"${number}::{'timestamptz' if field.annotation is datetime else 'text'}[]"
    for number, field in enumerate(Reminder.model_fields.values(), start=1)
)
"""One array parameter per column, of the column's type, for ``unnest``."""


async def replace_reminders(
    connection: Connection,
    subscription_ids: Sequence[str],
    *,
    subject: tuple[str, str],
    kind: NotificationKind,
    planned: Sequence[Reminder],
    now: datetime,
) -> None:
    """Make ``planned`` the subject's pending reminders of ``kind`` for these subscriptions: others are cancelled
    (a changed date, changed quiet hours), except those of the same date already due (about to be sent); one
    planned again (a redelivered event) is the same row and keeps its state."""
    agency_id, subject_id = subject
    keep = [reminder.reminder_id for reminder in planned]
    await connection.execute(
        "UPDATE scheduled_notices SET state = 'cancelled', decided_at = now()"
        " WHERE state = 'pending' AND agency_id = $1 AND subject_id = $2 AND kind = $3"
        "   AND subscription_id = ANY($4::text[]) AND NOT (reminder_id = ANY($5::text[]))"
        "   AND (scheduled_for IS DISTINCT FROM $6 OR due_at > $7)",
        agency_id,
        subject_id,
        str(kind),
        list(subscription_ids),
        keep,
        planned[0].scheduled_for if planned else None,
        now,
    )
    if not planned:
        return
    await connection.execute(
        f"INSERT INTO scheduled_notices ({REMINDER_COLUMNS}) SELECT * FROM unnest({REMINDER_ARRAYS})"  # noqa: S608
        " ON CONFLICT (reminder_id) DO NOTHING",
        *([getattr(reminder, name) for reminder in planned] for name in Reminder.model_fields),
    )


async def cancel_reminders(
    connection: Connection, agency_id: str, subject_id: str, kinds: Sequence[NotificationKind]
) -> int:
    """A release that happened (or a seal) ends the pending reminders of those kinds for the subject."""
    status = await connection.execute(
        "UPDATE scheduled_notices SET state = 'cancelled', decided_at = now()"
        " WHERE state = 'pending' AND agency_id = $1 AND subject_id = $2 AND kind = ANY($3::text[])",
        agency_id,
        subject_id,
        [str(kind) for kind in kinds],
    )
    return int(status.rsplit(" ", 1)[-1])


async def due_reminders(connection: Connection, now: datetime, limit: int) -> list[Reminder]:
    """Pending reminders due by ``now``, locked (skipped by another replica) until the transaction ends."""
    rows = await connection.fetch(
        f"SELECT {REMINDER_COLUMNS} FROM scheduled_notices"  # noqa: S608 - names from the model
        " WHERE state = 'pending' AND due_at <= $1"
        " ORDER BY due_at, reminder_id LIMIT $2 FOR UPDATE SKIP LOCKED",
        now,
        limit,
    )
    return [Reminder.model_validate(dict(row)) for row in rows]


async def mark_reminders(connection: Connection, reminder_ids: Sequence[str], state: str) -> None:
    await connection.execute(
        "UPDATE scheduled_notices SET state = $2, decided_at = now() WHERE reminder_id = ANY($1::text[])",
        list(reminder_ids),
        state,
    )
