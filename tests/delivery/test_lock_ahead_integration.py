"""A bookkeeping batch locks its attempts in one query and writes its updates set-based, one statement per shape,
and every read sees what the batch wrote before it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import asyncpg
import pytest

from services.delivery.store import attempts, notifications
from shared.db import Connection, apply_migrations
from tests.delivery.harness import stored_request

pytestmark = pytest.mark.integration


class CountingConnection:
    """Passes queries on to a connection and counts them."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.queries = 0

    async def fetch(self, query: str, *arguments: Any) -> list[asyncpg.Record]:
        self.queries += 1
        return await self.connection.fetch(query, *arguments)

    async def fetchrow(self, query: str, *arguments: Any) -> asyncpg.Record | None:
        self.queries += 1
        return await self.connection.fetchrow(query, *arguments)

    async def execute(self, query: str, *arguments: Any) -> str:
        self.queries += 1
        return await self.connection.execute(query, *arguments)


@pytest.fixture
async def three_attempts(pool: asyncpg.Pool) -> asyncpg.Pool:
    """Notices n-1..n-3, each with its attempt n-<i>.a1 in flight."""
    await apply_migrations(pool, ["shared", "services.delivery"])
    for number in (1, 2, 3):
        await pool.execute(
            "INSERT INTO notifications (notification_id, event_id, trace_id, kind, subscription_id, agency_id,"
            " channel, urgency, language, contact_masked, request, in_flight_attempt_id, attempt_count)"
            " VALUES ($1, $1, 't', 'status_change', 's', 'agency-1', 'sms', 'urgent', 'en', '+1***', $2::jsonb,"
            " $1 || '.a1', 1)",
            f"n-{number}",
            stored_request(number).model_dump(mode="json"),
        )
        await pool.execute(
            "INSERT INTO attempts (attempt_id, notification_id, number, purpose, channel, contact_masked, status,"
            " created_at, updated_at) VALUES ($1 || '.a1', $1, 1, 'first', 'sms', '+1***', 'sending', now(), now())",
            f"n-{number}",
        )
    return pool


async def test_a_batch_locks_its_attempts_in_one_query_and_reads_a_row_written_since_afresh(
    three_attempts: asyncpg.Pool,
) -> None:
    pool = three_attempts
    async with pool.acquire() as connection, connection.transaction():
        counting = CountingConnection(connection)
        batch = cast(Connection, counting)
        async with attempts.bookkeeping_batch(batch, ["n-3.a1", "n-1.a1", "n-2.a1", "unknown"]):
            assert counting.queries == 1
            async with pool.acquire() as other:
                with pytest.raises(asyncpg.LockNotAvailableError):
                    await other.execute("SELECT 1 FROM notifications WHERE notification_id = 'n-2' FOR UPDATE NOWAIT")

            first = await attempts.lock_with_notification(batch, "n-1.a1")
            assert first is not None
            assert (first[0].attempt_id, first[1].notification_id) == ("n-1.a1", "n-1")
            assert counting.queries == 1, "answered from the batch's query"

            await notifications.update_notification(batch, "n-2", status="sent")
            written = await attempts.lock_with_notification(batch, "n-2.a1")
            assert written is not None
            assert written[1].status.value == "sent", "written since: read afresh"
            assert counting.queries == 3

            again = await attempts.lock_with_notification(batch, "n-1.a1")
            assert again is not None
            assert counting.queries == 4, "each answered from the batch once, then from the table"
            assert await attempts.lock_with_notification(batch, "unknown") is None

        assert await attempts.lock_with_notification(batch, "n-3.a1") is not None
        assert counting.queries == 6, "outside the batch every lock is a query"


async def test_a_batch_writes_its_updates_in_one_statement_per_shape_before_anything_reads_them(
    three_attempts: asyncpg.Pool,
) -> None:
    pool = three_attempts
    now = datetime.now(UTC)
    async with pool.acquire() as connection, connection.transaction():
        counting = CountingConnection(connection)
        batch = cast(Connection, counting)
        async with attempts.bookkeeping_batch(batch, []):
            for number in (1, 2, 3):
                await attempts.update_with_notification(
                    batch,
                    f"n-{number}.a1",
                    now,
                    changes={"status": "sent", "handed_off_at": now},
                    notification_id=f"n-{number}",
                    notification_changes={"in_flight_attempt_id": None, "status": "sent"},
                )
            await attempts.record_calling(batch, "n-1.a2", now, body_fingerprint="unknown attempt: no row")
            assert counting.queries == 0, "held"
            await notifications.update_notification(batch, "n-3", status="delivered", outcome="delivered")
            assert counting.queries == 2, "n-3 was held already: what was held is written first, a statement a shape"
            read = await notifications.get_notification(batch, "n-2")
            assert read is not None
            assert (read.status.value, read.in_flight_attempt_id) == ("sent", None), "written before the read"
            assert counting.queries == 4, "the held update of n-3 (its own shape), then the read"
        assert counting.queries == 4, "nothing left to write at the end"
    rows = await pool.fetch(
        "SELECT n.notification_id, n.status, n.outcome, a.status AS attempt_status, a.handed_off_at"
        " FROM notifications n JOIN attempts a USING (notification_id) ORDER BY n.notification_id"
    )
    assert [(row["status"], row["outcome"], row["attempt_status"]) for row in rows] == [
        ("sent", None, "sent"),
        ("sent", None, "sent"),
        ("delivered", "delivered", "sent"),
    ]
    assert {row["handed_off_at"] for row in rows} == {now}
