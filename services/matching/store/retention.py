"""How long matching remembers what it handled and decided."""

from __future__ import annotations

from datetime import datetime

from shared.db import Connection


async def prune(connection: Connection, older_than: datetime) -> int:
    """Forget handled events and decided notices older than the retention; returns how many rows went.

    A replay only ever concerns the last uncommitted batch, so old rows serve only to recognise very late
    duplicates, whose notification ids are deterministic anyway.
    """
    handled = await connection.execute("DELETE FROM handled_events WHERE handled_at < $1", older_than)
    requests = await connection.execute(
        "DELETE FROM notification_requests WHERE created_at < $1 AND kind <> 'feed_silence'", older_than
    )
    stale = await connection.execute("DELETE FROM stale_custody_changes WHERE recorded_at < $1", older_than)
    reminders = await connection.execute(
        "DELETE FROM scheduled_notices WHERE state <> 'pending' AND decided_at < $1", older_than
    )
    return sum(int(status.rsplit(" ", 1)[-1]) for status in (handled, requests, stale, reminders))
