"""When a feed counts as quiet (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta


def feed_is_stale(last_feed_at: datetime | None, since: datetime, expected_minutes: int, now: datetime) -> bool:
    """A feed is quiet when nothing arrived for longer than its expected interval (counted from creation if never)."""
    return now - (last_feed_at or since) > timedelta(minutes=expected_minutes)
