"""The audit log's entries, and the reason an admin must give for an action that stops something."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

MAX_REASON = 500


class AuditEntry(BaseModel):
    at: datetime
    username: str
    action: str
    target: str
    outcome: str
    detail: dict[str, Any]


class DecisionRefusedError(ValueError):
    """A storm decision or a block that is refused before asking any other service, and why."""


def decision_reason(text: str | None, *, what: str) -> str:
    """The required reason of a discard or a block: 1..500 characters after trimming."""
    reason = (text or "").strip()
    if not reason:
        raise DecisionRefusedError(f"give a reason for {what}")
    if len(reason) > MAX_REASON:
        raise DecisionRefusedError(f"the reason is {len(reason)} characters; at most {MAX_REASON}")
    return reason
