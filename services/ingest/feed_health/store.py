"""Feed health: per agency and hour, how many records ended with each result, and the quiet-feed flags."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from services.ingest.domain.changes import RecordResult
from shared.db import Connection


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


async def set_feed_stale(connection: Connection, agency_id: str, stale: bool) -> None:
    await connection.execute("UPDATE agencies SET feed_stale = $2 WHERE agency_id = $1", agency_id, stale)


@dataclass(frozen=True)
class FeedStateBefore:
    """An agency's feed flags as they were before a feed arrived."""

    feed_stale: bool = False
    silence_notified_for: datetime | None = None


async def mark_feed_received(connection: Connection, agency_id: str, at: datetime) -> FeedStateBefore:
    """Note the feed's arrival (clearing the quiet flags); returns the flags as they were."""
    before = await connection.fetchrow(
        "UPDATE agencies a SET last_feed_at = greatest(a.last_feed_at, $2), feed_stale = false,"
        " silence_notified_for = NULL"
        " FROM (SELECT feed_stale, silence_notified_for FROM agencies WHERE agency_id = $1 FOR NO KEY UPDATE) AS before"
        " WHERE a.agency_id = $1 RETURNING before.feed_stale, before.silence_notified_for",
        agency_id,
        at,
    )
    return FeedStateBefore() if before is None else FeedStateBefore(**dict(before))


async def set_silence_notified(connection: Connection, agency_id: str, silent_since: datetime) -> None:
    await connection.execute(
        "UPDATE agencies SET silence_notified_for = $2 WHERE agency_id = $1", agency_id, silent_since
    )
