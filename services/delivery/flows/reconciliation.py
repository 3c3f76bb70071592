"""Asking providers about attempts whose final receipt never came (a lost status callback), on every channel whose
providers can be asked."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import asyncpg

from services.delivery.channels.registry import Channels
from services.delivery.flows.bookkeeper import Bookkeeper
from services.delivery.settings import DeliverySettings
from services.delivery.store import attempts


async def reconcile_once(
    *,
    pool: asyncpg.Pool,
    channels: Channels,
    bookkeeper: Bookkeeper,
    settings: DeliverySettings,
    clock: Callable[[], datetime],
    limit: int = 200,
) -> int:
    """One pass; returns how many receipts it applied."""
    now = clock()
    async with pool.acquire() as connection:
        stale = await attempts.attempts_awaiting_receipt(
            connection,
            handed_off_before=now - timedelta(seconds=settings.reconcile_after_seconds),
            handed_off_after=now - timedelta(seconds=settings.receipt_window_seconds),
            checked_before=now - timedelta(seconds=settings.reconcile_interval_seconds),
            channels=channels.reconciling(),
            limit=limit,
        )
    applied = 0
    for attempt in stale:
        receipt = await channels[attempt.channel].current_receipt(attempt)
        async with pool.acquire() as connection, connection.transaction():
            await attempts.update_attempt(connection, attempt.attempt_id, clock(), last_checked_at=now)
            if receipt is not None:
                await bookkeeper.apply_receipt(connection, attempt.attempt_id, receipt, now=clock())
                applied += 1
    return applied
