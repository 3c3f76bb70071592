"""Idempotent consumers: a redelivered event (Kafka is at-least-once) must have no second effect."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import asyncpg

from shared.db import Connection


async def claim_event(connection: Connection, consumer: str, event_id: str) -> bool:
    """Record that ``consumer`` applies ``event_id``; False when it already did. Call inside the transaction
    that applies the event, so the claim and the effect commit or roll back together."""
    claimed = await connection.fetchval(
        "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
        consumer,
        event_id,
    )
    return bool(claimed)


async def claim_events(connection: Connection, consumer: str, event_ids: Sequence[str]) -> set[str]:
    """:func:`claim_event` for a whole batch in one statement: the ids not applied before."""
    rows = await connection.fetch(
        "INSERT INTO processed_events (consumer, event_id) SELECT $1, unnest($2::text[])"
        " ON CONFLICT DO NOTHING RETURNING event_id",
        consumer,
        list(event_ids),
    )
    return {row["event_id"] for row in rows}


async def apply_once(
    pool: asyncpg.Pool,
    consumer: str,
    event_id: str,
    apply: Callable[[Connection], Awaitable[None]],
) -> bool:
    """Run ``apply`` in a transaction unless this consumer already applied the event; True when it ran."""
    async with pool.acquire() as connection, connection.transaction():
        if not await claim_event(connection, consumer, event_id):
            return False
        await apply(connection)
        return True
