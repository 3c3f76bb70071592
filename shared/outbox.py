"""Transactional outbox: write events in the caller's database transaction; a relay publishes them to Kafka.

A crash after commit and before publish loses nothing (the row waits); a crash after publish and before the row is
marked publishes it again, so consumers deduplicate by event id (:mod:`shared.idempotency`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from shared import metrics
from shared.backoff import Backoff, until_available
from shared.db import Connection, holds_session_state
from shared.envelope import KAFKA_HEADERS, CloudEvent, encode

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "outbox"
# Only one relay per database publishes at a time, so events leave in the order they were written.
RELAY_LOCK_ID = 7_312_002
RELAY_BACKOFF = Backoff(initial=0.25, maximum=1.0)


@dataclass(frozen=True)
class OutboxRow:
    """An event ready for the outbox, already encoded."""

    topic: str
    key: str
    event_id: str
    value: bytes


async def enqueue(connection: Connection, topic: str, key: str, event: CloudEvent[Any]) -> None:
    """Add an event to the outbox; call inside the transaction that changes the state it describes."""
    await enqueue_rows(connection, [OutboxRow(topic, key, event.id, encode(event))])


async def enqueue_rows(connection: Connection, rows: Sequence[OutboxRow]) -> None:
    """Add encoded events in their order with one statement and one NOTIFY (an event id already there is skipped)."""
    if not rows:
        return
    await connection.execute(
        "WITH added AS (INSERT INTO outbox (topic, key, event_id, value)"
        " SELECT t, k, i, v FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[]) WITH ORDINALITY"
        " AS e(t, k, i, v, n) ORDER BY n ON CONFLICT (event_id) DO NOTHING RETURNING 1)"
        " SELECT pg_notify($5, '')",  # one round trip: every status event of every notice comes through here
        [row.topic for row in rows],
        [row.key for row in rows],
        [row.event_id for row in rows],
        [row.value for row in rows],
        NOTIFY_CHANNEL,
    )


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        *,
        service: str,
        batch_size: int = 1000,
        poll_interval: float = 1.0,
        retention_hours: int = 24,
    ) -> None:
        self._pool = pool
        self._producer = producer
        self._service = service
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._retention_hours = retention_hours
        self._wake = asyncio.Event()

    async def publish_pending(self, connection: Connection) -> int:
        """Publish one batch of unpublished events in id order; returns how many were published."""
        rows = await connection.fetch(
            "SELECT id, topic, key, event_id, value FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1",
            self._batch_size,
        )
        if not rows:
            return 0
        futures = [
            await self._producer.send(
                row["topic"],
                value=bytes(row["value"]),
                key=row["key"].encode(),
                headers=KAFKA_HEADERS,
            )
            for row in rows
        ]
        await asyncio.gather(*futures)
        await connection.execute(
            "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])", [row["id"] for row in rows]
        )
        metrics.OUTBOX_PUBLISHED.labels(self._service).inc(len(rows))
        return len(rows)

    async def run(self) -> None:
        """Publish until cancelled; woken by NOTIFY for low latency, polling as a fallback. An outage of the
        database or broker is waited out (publishing resumes within a second of its end); any other failure ends
        the loop, for the service's supervisor to log and restart it."""
        await until_available(self._lead_on_own_connection, what="outbox relay", backoff=RELAY_BACKOFF)

    async def _lead_on_own_connection(self) -> None:
        async with self._pool.acquire() as connection:
            await self._lead(connection)

    async def _lead(self, connection: Connection) -> None:
        holds_session_state(connection)
        # Polling the lock is the point: another replica holds it until its connection ends.
        while not await connection.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK_ID):  # noqa: ASYNC110
            await asyncio.sleep(self._poll_interval)

        def on_notify(*_: object) -> None:
            self._wake.set()

        await connection.add_listener(NOTIFY_CHANNEL, on_notify)
        try:
            rounds = 0
            while True:
                self._wake.clear()
                published = await self.publish_pending(connection)
                # A short batch was everything pending when it was read: only a full one needs counting what is left.
                backlog = (
                    await connection.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                    if published >= self._batch_size
                    else 0
                )
                metrics.OUTBOX_BACKLOG.labels(self._service).set(backlog)
                rounds += 1
                if rounds % 600 == 0:
                    await connection.execute(
                        "DELETE FROM outbox WHERE published_at < now() - make_interval(hours => $1)",
                        self._retention_hours,
                    )
                if published < self._batch_size:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=self._poll_interval)
        finally:
            # After a lost connection there is nothing to undo (the server dropped the lock and the listener).
            with contextlib.suppress(asyncpg.InterfaceError, asyncpg.PostgresConnectionError, OSError):
                await connection.remove_listener(NOTIFY_CHANNEL, on_notify)
                await connection.execute("SELECT pg_advisory_unlock($1)", RELAY_LOCK_ID)
