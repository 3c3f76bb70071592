"""A provider's send rate, held across every delivery replica: slots come from one PostgreSQL token bucket.

Each process takes slots in small batches (one round trip per batch, see ``send_slots.take_send_slots``) and uses them
within ``slot_lifetime`` seconds or drops them, so however many replicas run, the provider sees at most
``burst + rate × (window + slot_lifetime)`` messages in any window.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import asyncpg

from services.delivery.store import send_slots

SLOT_LIFETIME_SECONDS = 0.25
MAX_BATCH = 50
MAX_WAIT_SECONDS = 0.5

Sleep = Callable[[float], Awaitable[None]]


class SharedSendRate:
    """``await acquire()`` before each provider call; callers in this process share the batch they fetched."""

    def __init__(
        self,
        pool: Callable[[], asyncpg.Pool],
        bucket: str,
        rate_per_second: float,
        *,
        burst: float | None = None,
        slot_lifetime: float = SLOT_LIFETIME_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        """``pool`` is called when slots are first needed (the pool exists only once the service started)."""
        if rate_per_second <= 0:
            raise ValueError("rate_per_second must be positive")
        self.bucket = bucket
        self.rate = rate_per_second
        self.burst = max(1.0, burst if burst is not None else rate_per_second)
        self.batch = max(1, min(MAX_BATCH, int(self.burst), int(rate_per_second * slot_lifetime)))
        self._pool = pool
        self._slot_lifetime = slot_lifetime
        self._clock = clock
        self._sleep = sleep
        self._slots = 0
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait (first come, first served) for a slot of the shared bucket, then take it."""
        async with self._lock:
            while True:
                if self._slots > 0 and self._clock() < self._expires_at:
                    self._slots -= 1
                    return
                async with self._pool().acquire() as connection:
                    granted = await send_slots.take_send_slots(
                        connection, self.bucket, self.batch, rate=self.rate, burst=self.burst
                    )
                self._slots = granted
                self._expires_at = self._clock() + self._slot_lifetime
                if granted == 0:
                    await self._sleep(min(MAX_WAIT_SECONDS, self.batch / self.rate))
