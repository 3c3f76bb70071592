"""Quiet hours, as delivery holds informational notices and matching moves reminders out of them."""

from __future__ import annotations

from datetime import time


def in_quiet_hours(local: time, start: time, end: time) -> bool:
    """Whether ``local`` falls in [start, end); the window may cross midnight (21:00–07:00); start == end means none."""
    if start == end:
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end
