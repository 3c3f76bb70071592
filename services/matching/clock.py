"""What time it is for matching: the system's, or (development and tests) the one written in a file."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

Clock = Callable[[], datetime]
"""What time it is; tests pass one they move, so reminders come due without waiting."""


def system_clock() -> datetime:
    return datetime.now(UTC)


def file_clock(path: Path) -> Clock:
    """The time written in ``path`` (ISO 8601), else the system's: read each time, so a test can move it."""

    def now() -> datetime:
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            return system_clock()
        return datetime.fromisoformat(text) if text else system_clock()

    return now
