"""Kafka handlers of the ``ops`` group: delivery progress and alerts, each applied once.

A fetched batch is applied in one transaction of a few set-based statements (:meth:`OpsHandler.handle_batch`);
if it fails, the consumer hands its events to :meth:`OpsHandler.__call__` one by one, each in its own transaction,
so only the event at fault goes to the retry topic. Both claim the event in ``processed_events`` first, so an
event applied by one is skipped by the other.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

import asyncpg
from aiokafka import ConsumerRecord

from services.ops import metrics
from services.ops.alerts.store import record_alert, record_alerts
from services.ops.deliveries.domain import LATENCY_STAGES, latency_seconds
from services.ops.deliveries.store import record_status_changes
from shared.db import Connection
from shared.envelope import CloudEvent
from shared.events import NotificationStatusChanged, OpsAlert, Payload
from shared.idempotency import apply_once, claim_events
from shared.kafka.consumer import DecodedRecord, UnexpectedEventError
from shared.topics import NOTIFICATION_STATUS_CHANGED, OPS_ALERT, TopicSpec

CONSUMER_GROUP = "ops"
CONSUMED_TOPICS: tuple[TopicSpec, ...] = (NOTIFICATION_STATUS_CHANGED, OPS_ALERT)
PRODUCED_TOPICS: tuple[TopicSpec, ...] = (OPS_ALERT,)
"""Feed-stale and feed-recovered alerts (through the outbox, by :mod:`services.ops.feeds.flows`)."""

Applied = TypeVar("Applied", bound=tuple[str, object, object])
StatusChange = tuple[str, NotificationStatusChanged, float | None]
"""An event id, its status change and the latency it closes (if any)."""
Alert = tuple[str, str, OpsAlert]
"""An event id, the service that raised the alert, and the alert."""


class OpsHandler:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def __call__(self, event: CloudEvent[Payload], record: ConsumerRecord[bytes, bytes]) -> None:
        data = event.data
        if isinstance(data, NotificationStatusChanged):
            await self.status_changed(event.id, data)
        elif isinstance(data, OpsAlert):
            await self.alert(event.id, event.source, data)
        else:
            raise UnexpectedEventError.of(event, record)

    async def handle_batch(self, batch: Sequence[DecodedRecord]) -> None:
        """The batch's new events in one transaction; the metrics count each once, after the commit."""
        changes: list[StatusChange] = []
        alerts: list[Alert] = []
        for event, record in batch:
            data = event.data
            if isinstance(data, NotificationStatusChanged):
                changes.append((event.id, data, latency_seconds(data.status, data.at, data.feed_received_at)))
            elif isinstance(data, OpsAlert):
                alerts.append((event.id, event.source, data))
            else:
                raise UnexpectedEventError.of(event, record)
        async with self._pool.acquire() as connection, connection.transaction():
            new = await claim_events(connection, CONSUMER_GROUP, [event.id for event, _ in batch])
            changes = first_of_each(changes, new)
            alerts = first_of_each(alerts, new)
            await record_status_changes(connection, changes)
            await record_alerts(connection, alerts)
        for _, change, latency in changes:
            count_status_change(change, latency)
        for _, _, alert in alerts:
            metrics.ALERTS.labels(alert.kind).inc()

    async def status_changed(self, event_id: str, change: NotificationStatusChanged) -> None:
        latency = latency_seconds(change.status, change.at, change.feed_received_at)

        async def apply(connection: Connection) -> None:
            await record_status_changes(connection, [(event_id, change, latency)])

        if await apply_once(self._pool, CONSUMER_GROUP, event_id, apply):
            count_status_change(change, latency)

    async def alert(self, event_id: str, source: str, alert: OpsAlert) -> None:
        async def apply(connection: Connection) -> None:
            await record_alert(connection, event_id, source, alert)

        if await apply_once(self._pool, CONSUMER_GROUP, event_id, apply):
            metrics.ALERTS.labels(alert.kind).inc()


def first_of_each(applied: Iterable[Applied], new_ids: set[str]) -> list[Applied]:
    """The first occurrence of each event whose id is in ``new_ids`` (a batch may hold one event twice), in order."""
    kept: list[Applied] = []
    seen: set[str] = set()
    for item in applied:
        event_id = item[0]
        if event_id in new_ids and event_id not in seen:
            seen.add(event_id)
            kept.append(item)
    return kept


def count_status_change(change: NotificationStatusChanged, latency: float | None) -> None:
    metrics.NOTIFICATIONS.labels(change.channel.value, change.provider or "none", change.status.value).inc()
    if latency is not None:
        metrics.LATENCY.labels(LATENCY_STAGES[change.status]).observe(latency)
