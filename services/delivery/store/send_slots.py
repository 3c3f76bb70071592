"""The token buckets every replica draws its providers' send slots from (see migration 0004)."""

from __future__ import annotations

from typing import Any

from shared.db import Connection


async def take_send_slots(connection: Connection, bucket: str, wanted: int, *, rate: float, burst: float) -> int:
    """Up to ``wanted`` slots of the bucket; how many were granted."""
    granted: Any = await connection.fetchval("SELECT take_send_slots($1, $2, $3, $4)", bucket, wanted, rate, burst)
    return int(granted or 0)
