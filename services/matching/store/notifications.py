"""Every notification request decided, with its exact encoded event, so a replay sends the same bytes."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from shared.db import Connection
from shared.events import NotificationRequested


class StoredNotification(BaseModel):
    """A decided notice as it is sent: its id (the record's key) and its encoded CloudEvent."""

    model_config = ConfigDict(frozen=True)

    notification_id: str
    value: bytes


STORED_COLUMNS = ", ".join(StoredNotification.model_fields)


async def record_notifications(
    connection: Connection,
    cause_event_id: str,
    notices: Sequence[tuple[NotificationRequested, bytes]],
    about: str | None = None,
) -> list[tuple[NotificationRequested, bytes]]:
    """Store each decided notice with its encoded event; returns those new (one per contact and custody change).

    ``about`` replaces the custody event as what the notices are about (a feed silence, a date, a reminder), for
    de-duplication.
    """
    if not notices:
        return []
    inserted = await connection.fetch(
        "INSERT INTO notification_requests (notification_id, cause_event_id, subscription_id, channel,"
        " custody_event_id, kind, urgency, value)"
        " SELECT n, $1, s, c, e, k, u, v FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[],"
        " $7::text[], $8::bytea[]) WITH ORDINALITY AS t(n, s, c, e, k, u, v, o) ORDER BY o"
        " ON CONFLICT DO NOTHING RETURNING notification_id",
        cause_event_id,
        [notice.notification_id for notice, _ in notices],
        [notice.subscription_id for notice, _ in notices],
        [str(notice.channel) for notice, _ in notices],
        [about or (notice.custody.custody_event_id if notice.custody else "") for notice, _ in notices],
        [str(notice.kind) for notice, _ in notices],
        [str(notice.urgency) for notice, _ in notices],
        [value for _, value in notices],
    )
    new = {row["notification_id"] for row in inserted}
    return [(notice, value) for notice, value in notices if notice.notification_id in new]


async def notifications_caused_by(connection: Connection, cause_event_id: str) -> list[StoredNotification]:
    rows = await connection.fetch(
        f"SELECT {STORED_COLUMNS} FROM notification_requests"  # noqa: S608 - names from the model
        " WHERE cause_event_id = $1 ORDER BY notification_id",
        cause_event_id,
    )
    return [StoredNotification.model_validate(dict(row)) for row in rows]
