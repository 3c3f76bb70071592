"""Kafka handlers of the ``ops`` group: delivery progress and alerts, each applied once."""

from __future__ import annotations

import asyncpg
from aiokafka import ConsumerRecord

from services.ops import metrics
from services.ops.alerts.store import record_alert
from services.ops.deliveries.domain import LATENCY_STAGES, latency_seconds
from services.ops.deliveries.store import record_status_change
from shared.db import Connection
from shared.envelope import CloudEvent
from shared.events import NotificationStatusChanged, OpsAlert, Payload
from shared.idempotency import apply_once
from shared.kafka.consumer import UnexpectedEventError
from shared.topics import NOTIFICATION_STATUS_CHANGED, OPS_ALERT, TopicSpec

CONSUMER_GROUP = "ops"
CONSUMED_TOPICS: tuple[TopicSpec, ...] = (NOTIFICATION_STATUS_CHANGED, OPS_ALERT)
PRODUCED_TOPICS: tuple[TopicSpec, ...] = (OPS_ALERT,)
"""Feed-stale and feed-recovered alerts (through the outbox, by :mod:`services.ops.feeds.flows`)."""


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

    async def status_changed(self, event_id: str, change: NotificationStatusChanged) -> None:
        latency = latency_seconds(change.status, change.at, change.feed_received_at)

        async def apply(connection: Connection) -> None:
            await record_status_change(connection, event_id, change, latency)

        if not await apply_once(self._pool, CONSUMER_GROUP, event_id, apply):
            return
        metrics.NOTIFICATIONS.labels(change.channel.value, change.provider or "none", change.status.value).inc()
        if latency is not None:
            metrics.LATENCY.labels(LATENCY_STAGES[change.status]).observe(latency)

    async def alert(self, event_id: str, source: str, alert: OpsAlert) -> None:
        async def apply(connection: Connection) -> None:
            await record_alert(connection, event_id, source, alert)

        if await apply_once(self._pool, CONSUMER_GROUP, event_id, apply):
            metrics.ALERTS.labels(alert.kind).inc()
