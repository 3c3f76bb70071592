"""Feeds in SQL: each agency's feed as ops last judged it."""

from __future__ import annotations

from services.ops.feeds.domain import FeedOutage, FeedState
from shared.columns import column_list, fields_of, placeholders
from shared.db import Connection

_FEED_COLUMNS = column_list(FeedState)
_UPDATES = ", ".join(
    f"{name} = coalesce(EXCLUDED.{name}, feeds.{name})" if name == "notices_paused" else f"{name} = EXCLUDED.{name}"
    for name in fields_of(FeedState, without=["agency_id"])
)


async def lock_feed(connection: Connection, agency_id: str) -> FeedOutage | None:
    """The feed's last known state, locked for this transaction (two replicas never alert twice)."""
    row = await connection.fetchrow(
        f"SELECT {column_list(FeedOutage)} FROM feeds WHERE agency_id = $1 FOR UPDATE",  # noqa: S608 - columns
        agency_id,
    )
    return FeedOutage.model_validate(dict(row)) if row else None


async def save_feed(connection: Connection, feed: FeedState) -> None:
    """Insert or replace; a pause flag ingest did not report keeps the one ops knew."""
    values = feed.model_dump()
    await connection.execute(
        f"INSERT INTO feeds ({_FEED_COLUMNS}) VALUES ({placeholders(len(values))})"  # noqa: S608 - columns
        f" ON CONFLICT (agency_id) DO UPDATE SET {_UPDATES}",
        *values.values(),
    )


async def set_feed_paused(connection: Connection, agency_id: str, *, paused: bool) -> None:
    await connection.execute("UPDATE feeds SET notices_paused = $2 WHERE agency_id = $1", agency_id, paused)


async def list_feeds(connection: Connection) -> list[FeedState]:
    rows = await connection.fetch(
        f"SELECT {_FEED_COLUMNS} FROM feeds ORDER BY stale DESC, agency_id"  # noqa: S608 - columns of a model
    )
    return [FeedState.model_validate(dict(row)) for row in rows]
