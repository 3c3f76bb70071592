"""The send rate lives in PostgreSQL: two processes' limiters on one database hold one provider's rate together."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from services.delivery.sendrate import SLOT_LIFETIME_SECONDS, SharedSendRate
from shared.db import apply_migrations, create_pool
from tests.delivery.harness import most_in_any_window

pytestmark = pytest.mark.integration

RATE = 40.0
RUN_SECONDS = 3.0


async def test_two_replicas_together_never_exceed_the_configured_rate(database_url: str, pool: asyncpg.Pool) -> None:
    await apply_migrations(pool, ["shared", "services.delivery"])
    other_replica = await create_pool(database_url, max_size=3)
    try:
        limiters = [
            SharedSendRate(lambda: pool, "sms:test", RATE),
            SharedSendRate(lambda: other_replica, "sms:test", RATE),
        ]
        granted: list[float] = []
        deadline = time.monotonic() + RUN_SECONDS

        async def sender(limiter: SharedSendRate) -> None:
            while time.monotonic() < deadline:
                await limiter.acquire()
                granted.append(time.monotonic())

        await asyncio.gather(*(sender(limiter) for limiter in limiters for _ in range(8)))
    finally:
        await other_replica.close()

    burst = limiters[0].burst
    for window in (0.25, 0.5, 1.0, 2.0):
        allowed = burst + RATE * (window + SLOT_LIFETIME_SECONDS)
        assert most_in_any_window(granted, window) <= allowed, window
    # Both kept sending, at about the rate between them (not each at the rate): burst + rate × time at most.
    span = max(granted) - min(granted)
    assert RATE * RUN_SECONDS * 0.6 <= len(granted) <= burst + RATE * (span + SLOT_LIFETIME_SECONDS)


async def test_a_bucket_refills_at_its_rate_up_to_its_burst(pool: asyncpg.Pool) -> None:
    await apply_migrations(pool, ["shared", "services.delivery"])
    take = "SELECT take_send_slots('sms:refill', $1, 10.0, 5.0)"
    assert await pool.fetchval(take, 100) == 5  # a full bucket: its burst
    assert await pool.fetchval(take, 100) == 0
    await pool.execute("UPDATE send_rate_buckets SET updated_at = updated_at - interval '0.3 seconds'")
    assert await pool.fetchval(take, 100) == 3  # 0.3 s at 10/s
    await pool.execute("UPDATE send_rate_buckets SET updated_at = updated_at - interval '1 hour'")
    assert await pool.fetchval(take, 2) == 2  # never more than asked
    assert await pool.fetchval(take, 100) == 3  # the rest of the burst, not an hour's worth
    with pytest.raises(ValueError, match="positive"):
        SharedSendRate(lambda: pool, "sms:none", 0)
