"""Fixed-window rate limits, counted in PostgreSQL so every replica sees the same counts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Limit:
    name: str
    max_hits: int
    window: timedelta


def window_start(now: datetime, window: timedelta) -> datetime:
    seconds = int(window.total_seconds())
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=now.tzinfo)


def retry_after(now: datetime, window: timedelta) -> int:
    """Whole seconds until the current window ends (at least one)."""
    end = window_start(now, window) + window
    return max(1, int((end - now).total_seconds() + 0.999))
