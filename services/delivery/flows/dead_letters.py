"""Parking given-up notices on ``dlq.delivery`` with their attempt history, for operators to replay."""

from __future__ import annotations

import json
import logging
from datetime import datetime

import asyncpg
from aiokafka import AIOKafkaProducer

from services.delivery.consumers import CONSUMER_GROUP
from services.delivery.flows.events import SOURCE
from services.delivery.store import attempts, notifications
from services.delivery.store.attempts import AttemptRow
from shared.envelope import KAFKA_HEADERS, encode, new_event
from shared.kafka.records import H_ERROR, H_ORIGINAL_TOPIC
from shared.settings import KafkaSettings
from shared.topics import NOTIFICATION_REQUESTED, dead_letter_topic

log = logging.getLogger(__name__)

H_HISTORY = "cw-history"


def history_of(attempt: AttemptRow) -> dict[str, object]:
    return {
        "attempt_id": attempt.attempt_id,
        "number": attempt.number,
        "purpose": attempt.purpose,
        "contact": attempt.contact_masked,
        "provider": attempt.provider,
        "status": attempt.status.value,
        "error_code": attempt.error_code,
        "detail": attempt.detail,
        "created_at": attempt.created_at.isoformat(),
        "completed_at": attempt.completed_at.isoformat() if attempt.completed_at else None,
    }


async def dead_letter_once(
    pool: asyncpg.Pool, producer: AIOKafkaProducer, kafka: KafkaSettings, now: datetime, limit: int = 100
) -> int:
    """Park up to ``limit`` given-up notices; returns how many."""
    topic = kafka.topic(dead_letter_topic(CONSUMER_GROUP))
    origin = kafka.topic(NOTIFICATION_REQUESTED.name)
    async with pool.acquire() as connection, connection.transaction():
        rows = await notifications.notifications_to_dead_letter(connection, limit)
        if not rows:
            return 0
        histories = await attempts.attempts_of(connection, [row.notification_id for row in rows])
        for row in rows:
            event = new_event(
                row.request, source=SOURCE, subject=row.notification_id, event_id=row.event_id, trace_id=row.trace_id
            )
            await producer.send_and_wait(
                topic,
                value=encode(event),
                key=row.notification_id.encode(),
                headers=[
                    *KAFKA_HEADERS,
                    (H_ORIGINAL_TOPIC, origin.encode()),
                    (H_ERROR, (row.parked_reason or "gave up")[:2000].encode()),
                    (H_HISTORY, json.dumps([history_of(a) for a in histories[row.notification_id]]).encode()),
                ],
            )
            await notifications.update_notification(connection, row.notification_id, dead_lettered_at=now)
    log.warning("parked %d notices on the dead-letter topic", len(rows))
    return len(rows)
