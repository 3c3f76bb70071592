"""How a record that failed on its own merits goes round its group's retry topic, then to its dead-letter topic.

A copy on either topic keeps its value, key and headers, and says where it first came from, why it failed, and
(on the retry topic) its attempt number and the time before which it must not be tried again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord

from shared.backoff import Backoff
from shared.kafka.records import (
    H_ATTEMPT,
    H_ERROR,
    H_NOT_BEFORE,
    H_ORIGINAL_OFFSET,
    H_ORIGINAL_PARTITION,
    H_ORIGINAL_TOPIC,
    header,
)


@dataclass(frozen=True)
class RetryTopicPolicy:
    """How many times a consumer tries a record (through its retry topic) before its dead letter, and how long
    each copy waits on the retry topic. Not to be confused with a notice's stored retry schedule (delivery)."""

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 300.0

    def delay(self, attempt: int) -> float:
        return Backoff(initial=self.base_delay, maximum=self.max_delay).delay(attempt)


def attempt_of(record: ConsumerRecord[bytes, bytes]) -> int:
    return int(header(record, H_ATTEMPT) or 1)


def not_before(record: ConsumerRecord[bytes, bytes]) -> float | None:
    """When a copy on the retry topic may be tried again (epoch seconds), or None for any other record."""
    value = header(record, H_NOT_BEFORE)
    return float(value) if value else None


async def forward(
    producer: AIOKafkaProducer,
    record: ConsumerRecord[bytes, bytes],
    topic: str,
    *,
    error: str,
    attempt: int | None = None,
    retry_at: float | None = None,
) -> asyncio.Future[Any]:
    """Copy a record to the retry or dead-letter topic ``topic``, keeping where it first came from."""
    kept = {H_ORIGINAL_TOPIC, H_ORIGINAL_PARTITION, H_ORIGINAL_OFFSET}
    headers = [(k, v) for k, v in record.headers or () if k in kept or not k.startswith("cw-")]
    if header(record, H_ORIGINAL_TOPIC) is None:
        headers += [
            (H_ORIGINAL_TOPIC, record.topic.encode()),
            (H_ORIGINAL_PARTITION, str(record.partition).encode()),
            (H_ORIGINAL_OFFSET, str(record.offset).encode()),
        ]
    headers.append((H_ERROR, error[:2000].encode()))
    if attempt is not None:
        headers.append((H_ATTEMPT, str(attempt).encode()))
    if retry_at is not None:
        headers.append((H_NOT_BEFORE, f"{retry_at:.3f}".encode()))
    future: asyncio.Future[Any] = await producer.send(topic, value=record.value, key=record.key, headers=headers)
    return future
