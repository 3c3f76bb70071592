"""Writing ingest's events to the outbox, in the caller's transaction: one envelope, one source, one topic name."""

from __future__ import annotations

from datetime import datetime

from services.ingest.domain.events import EVENT_SOURCE, stable_id
from services.ingest.settings import IngestSettings
from shared.db import Connection
from shared.envelope import new_event
from shared.events import OpsAlert, Payload
from shared.outbox import enqueue
from shared.topics import OPS_ALERT, TopicSpec


async def publish(
    connection: Connection,
    settings: IngestSettings,
    topic: TopicSpec,
    key: str,
    payload: Payload,
    *,
    event_id: str | None = None,
    at: datetime | None = None,
) -> None:
    """Enqueue ``payload`` on ``topic`` under ``key`` (also the event's subject); a fixed ``event_id`` makes a retry
    repeat nothing."""
    event = new_event(payload, source=EVENT_SOURCE, subject=key, event_id=event_id, at=at)
    await enqueue(connection, settings.kafka.topic(topic.name), key, event)


async def alert_operators(
    connection: Connection,
    settings: IngestSettings,
    kind: str,
    agency_id: str,
    message: str,
    *,
    at: datetime,
    cause: str,
) -> None:
    """An alert for operators, its id fixed by what caused it (a hold, an outage)."""
    alert = OpsAlert(kind=kind, agency_id=agency_id, message=message, at=at)
    event_id = stable_id(f"ops:{agency_id}/{kind}/{cause}")
    await publish(connection, settings, OPS_ALERT, agency_id, alert, event_id=event_id, at=at)
