"""Fixed-window rate-limit counters, shared by every replica. Buckets are keyed hashes, never addresses."""

from __future__ import annotations

from datetime import datetime

from shared.db import Connection


async def count_hit(connection: Connection, bucket: str, window_start: datetime) -> int:
    """Count one request in a fixed window; returns the hits so far, this one included."""
    hits = await connection.fetchval(
        """
        INSERT INTO rate_limit_windows (bucket, window_start, hits) VALUES ($1, $2, 1)
        ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limit_windows.hits + 1
        RETURNING hits
        """,
        bucket,
        window_start,
    )
    return int(hits)


async def forget_old_windows(connection: Connection, before: datetime) -> None:
    await connection.execute("DELETE FROM rate_limit_windows WHERE window_start < $1", before)
