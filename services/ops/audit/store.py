"""The audit log in SQL: who did what and when."""

from __future__ import annotations

from typing import Any

from services.ops.audit.domain import AuditEntry
from shared.columns import column_list
from shared.db import Connection


async def audit(
    connection: Connection,
    username: str,
    action: str,
    target: str,
    *,
    outcome: str,
    detail: dict[str, Any] | None = None,
) -> None:
    await connection.execute(
        "INSERT INTO audit_log (username, action, target, outcome, detail) VALUES ($1, $2, $3, $4, $5)",
        username,
        action,
        target,
        outcome,
        detail or {},
    )


async def recent_audit(connection: Connection, limit: int = 100) -> list[AuditEntry]:
    rows = await connection.fetch(
        f"SELECT {column_list(AuditEntry)} FROM audit_log"  # noqa: S608 - columns of a model
        " ORDER BY at DESC, id DESC LIMIT $1",
        limit,
    )
    return [AuditEntry.model_validate(dict(row)) for row in rows]


async def recent_admin_actions(connection: Connection, username: str, window_seconds: float) -> int:
    """Admin actions this operator attempted within the window (logins and refusals for the limit itself aside)."""
    value = await connection.fetchval(
        "SELECT count(*) FROM audit_log WHERE username = $1 AND action <> 'login' AND outcome <> 'rate_limited'"
        " AND at > now() - make_interval(secs => $2)",
        username,
        window_seconds,
    )
    return int(value or 0)


async def audit_of(connection: Connection, action: str, target: str, limit: int = 20) -> list[AuditEntry]:
    """One kind of action on one target, newest first (e.g. every block of one notice)."""
    rows = await connection.fetch(
        f"SELECT {column_list(AuditEntry)} FROM audit_log"  # noqa: S608 - columns of a model
        " WHERE action = $1 AND target = $2 ORDER BY at DESC, id DESC LIMIT $3",
        action,
        target,
        limit,
    )
    return [AuditEntry.model_validate(dict(row)) for row in rows]
