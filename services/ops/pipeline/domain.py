"""Kafka as operators see it, without I/O: consumer lag, dead letters described safely, and what may be replayed."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import ConsumerRecord
from pydantic import BaseModel, ConfigDict

from shared.kafka.records import H_ERROR, H_ORIGINAL_TOPIC, header
from shared.logging import redact

H_REPLAYED_FROM = "cw-replayed-from"
H_REPLAYED_BY = "cw-replayed-by"
MAX_ERROR_SHOWN = 500

TopicPartitionKey = tuple[str, int]


def consumer_lag(
    committed: Mapping[TopicPartitionKey, int], end_offsets: Mapping[TopicPartitionKey, int]
) -> dict[str, int]:
    """Messages not yet processed per topic: end offset minus committed offset, summed over partitions."""
    lag: dict[str, int] = {}
    for (topic, partition), offset in committed.items():
        end = end_offsets.get((topic, partition))
        if end is None:
            continue
        lag[topic] = lag.get(topic, 0) + max(0, end - offset)
    return lag


def strip_prefix(topic: str, prefix: str) -> str | None:
    """The base name of one of our topics; None for a topic of another deployment sharing the broker."""
    return topic[len(prefix) :] if topic.startswith(prefix) else None


class ReplayRefusedError(ValueError):
    """A dead letter that cannot be replayed, and why."""


def replay_target(original_topic: str | None, prefix: str, known_topics: Iterable[str]) -> str:
    """The topic to re-publish a dead letter to: only one of this deployment's event topics, never another DLQ."""
    if not original_topic:
        raise ReplayRefusedError("the dead letter has no cw-original-topic header")
    base = strip_prefix(original_topic, prefix)
    if base is None or base not in set(known_topics):
        raise ReplayRefusedError(f"original topic {original_topic!r} is not one of this deployment's event topics")
    return original_topic


class ReplayNotFoundError(LookupError):
    pass


class AlreadyReplayedError(RuntimeError):
    pass


class DeadLetter(BaseModel):
    """What an operator needs to judge a dead letter; never its value (it may hold encrypted contacts)."""

    model_config = ConfigDict(frozen=True)

    topic: str
    partition: int
    offset: int
    timestamp: datetime
    original_topic: str | None
    error: str | None
    event_type: str | None
    event_id: str | None


@dataclass
class PipelineSnapshot:
    lag: dict[tuple[str, str], int] = field(default_factory=dict)
    dlq_sizes: dict[str, int] = field(default_factory=dict)
    dead_letters: dict[str, list[DeadLetter]] = field(default_factory=dict)
    checked_at: datetime | None = None
    error: str | None = None


class Replay(BaseModel):
    """A dead letter already replayed, and by whom (a row of ``replays``)."""

    topic: str
    partition: int
    offset: int
    username: str
    at: datetime


def describe_dead_letter(record: ConsumerRecord[bytes, bytes], prefix: str) -> DeadLetter:
    event_type = event_id = None
    try:
        document = json.loads(record.value or b"")
        if isinstance(document, dict):
            event_type = str(document.get("type")) if document.get("type") else None
            event_id = str(document.get("id")) if document.get("id") else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        pass
    original = header(record, H_ORIGINAL_TOPIC)
    error = header(record, H_ERROR)
    return DeadLetter(
        topic=strip_prefix(record.topic, prefix) or record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp=datetime.fromtimestamp(record.timestamp / 1000, UTC),
        original_topic=(strip_prefix(original, prefix) or original) if original else None,
        error=redact(error)[:MAX_ERROR_SHOWN] if error else None,
        event_type=event_type,
        event_id=event_id,
    )


def replay_headers(
    headers: Sequence[tuple[str, bytes]], *, dlq_topic: str, partition: int, offset: int, username: str
) -> list[tuple[str, bytes]]:
    """The dead letter's own headers without ours (``cw-``: its error, its original position), and who replayed it."""
    kept = [(key, value) for key, value in headers if not key.startswith("cw-")]
    return [
        *kept,
        (H_REPLAYED_FROM, f"{dlq_topic}:{partition}:{offset}".encode()),
        (H_REPLAYED_BY, username.encode()),
    ]
