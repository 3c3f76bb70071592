"""The dispatcher's claim reads the oldest due notices from an index, however many notices are stored."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from services.delivery.domain import PAUSABLE_KINDS
from services.delivery.store import notifications
from shared.db import apply_migrations
from tests.delivery.harness import stored_request

pytestmark = pytest.mark.integration


def plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes.extend(plan_nodes(child))
    return nodes


async def test_claiming_is_an_index_range_scan_in_due_order_without_a_sort(pool: asyncpg.Pool) -> None:
    await apply_migrations(pool, ["shared", "services.delivery"])
    now = datetime.now(UTC)
    # 20,000 notices: most finished (nothing due), some due later, 150 due now, some in flight (lease due or not).
    await pool.execute(
        "INSERT INTO notifications (notification_id, event_id, trace_id, kind, subscription_id, agency_id, channel,"
        " urgency, language, contact_masked, request, outcome, next_attempt_at, in_flight_attempt_id, lease_until)"
        " SELECT 'n-' || i, 'e-' || i, 't', 'status_change', 's-' || i, 'agency-1', 'sms', 'urgent', 'en', '+1***',"
        " $2::jsonb,"
        " CASE WHEN i % 100 >= 2 THEN 'delivered' END,"
        " CASE WHEN i % 100 = 0 THEN $1::timestamptz - (i || ' ms')::interval"
        "      WHEN i % 100 >= 90 THEN $1::timestamptz + interval '30 minutes' END,"
        " CASE WHEN i % 100 = 1 THEN 'n-' || i || '.a1' END,"
        " CASE WHEN i % 100 = 1 THEN $1::timestamptz + ((i % 3 - 1) || ' minutes')::interval END"
        " FROM generate_series(1, 20000) AS i",
        now,
        stored_request().model_dump(mode="json"),
    )
    await pool.execute("ANALYZE notifications")
    kinds = sorted(kind.value for kind in PAUSABLE_KINDS)

    explained = await pool.fetchval(f"EXPLAIN (FORMAT JSON) {notifications.LOCK_DUE_QUERY}", now, 100, kinds)
    nodes = plan_nodes((json.loads(explained) if isinstance(explained, str) else explained)[0]["Plan"])
    scans = [node for node in nodes if node.get("Relation Name") == "notifications"]
    assert [node.get("Index Name") for node in scans] == ["notifications_due_at"], nodes
    assert not any(node["Node Type"] in {"Sort", "Incremental Sort"} for node in nodes), nodes

    async with pool.acquire() as connection, connection.transaction():
        rows = await notifications.lock_due(connection, now, 1_000)
    due = await pool.fetchval("SELECT count(*) FROM notifications WHERE due_at <= $1", now)
    assert len(rows) == due > 200, "due now: next attempts passed and leases run out, nothing else"
    claimed = [row.next_attempt_at if row.in_flight_attempt_id is None else row.lease_until for row in rows]
    moments = [moment for moment in claimed if moment is not None]
    assert len(moments) == len(claimed)
    assert moments == sorted(moments), "oldest first"
    assert all(moment <= now for moment in moments)
    assert max(moments) - min(moments) > timedelta(seconds=1)
