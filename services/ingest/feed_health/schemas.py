"""HTTP model of a feed's health."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class FeedHealth(BaseModel):
    agency_id: str
    name: str
    last_feed_at: datetime | None
    expected_feed_interval_minutes: int
    stale: bool
    notices_paused: bool
    in_custody: int
    records_last_24h: dict[str, int]
    records_total: dict[str, int]
