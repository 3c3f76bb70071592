"""Recording what operators did: every admin action's outcome goes to the audit log and its metric."""

from __future__ import annotations

from typing import Any

import asyncpg

from services.ops import metrics
from services.ops.audit import store
from services.ops.audit.domain import AuditEntry


async def record_action(
    pool: asyncpg.Pool,
    username: str,
    action: str,
    target: str,
    *,
    outcome: str,
    detail: dict[str, Any] | None = None,
) -> None:
    async with pool.acquire() as connection:
        await store.audit(connection, username, action, target, outcome=outcome, detail=detail)
    metrics.ADMIN_ACTIONS.labels(action, outcome).inc()


async def within_action_limit(
    pool: asyncpg.Pool, username: str, action: str, target: str, *, limit: int, window_seconds: float
) -> bool:
    """Whether an admin may act once more within the window; a refusal is itself audited."""
    async with pool.acquire() as connection:
        if await store.recent_admin_actions(connection, username, window_seconds) < limit:
            return True
        await store.audit(connection, username, action, target, outcome="rate_limited")
    metrics.ADMIN_ACTIONS.labels(action, "rate_limited").inc()
    return False


async def recent_entries(pool: asyncpg.Pool) -> list[AuditEntry]:
    async with pool.acquire() as connection:
        return await store.recent_audit(connection)
