"""Where the time goes between the feed and the provider, notice by notice, from timestamps the system already
keeps: Kafka record times of the custody event (ingest's outbox) and of the notification request (matching),
and the delivery history (stored, claimed, delivered)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer

from shared.topics import CUSTODY_STATUS_CHANGED, NOTIFICATION_REQUESTED
from tests.bench.analysis import summarise
from tests.bench.system import TOPIC_PREFIX, Accepted, Handoff

STAGES = (
    ("feed accepted → custody event on Kafka (ingest outbox)", "accepted", "published"),
    ("→ notification requested on Kafka (matching)", "published", "matched"),
    ("→ stored by delivery (delivery consumer)", "matched", "stored"),
    ("→ claimed for sending (dispatcher poll)", "stored", "claimed"),
    ("→ received by the provider (render + send)", "claimed", "handed_off"),
    ("→ delivered receipt recorded", "handed_off", "delivered"),
)


async def _read_all(bootstrap: str, topic: str, idle_ms: int = 1500) -> list[tuple[float, dict[str, Any]]]:
    """Every committed record of a topic: (record time, decoded event)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    out: list[tuple[float, dict[str, Any]]] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=idle_ms, max_records=20_000)
            if not batches and out:
                break
            for records in batches.values():
                out.extend((record.timestamp / 1000, json.loads(record.value or b"{}")) for record in records)
    finally:
        await consumer.stop()
    return out


async def kafka_times(bootstrap: str) -> tuple[dict[str, float], dict[str, tuple[str, float]]]:
    """(custody event id → record time, notification id → (custody event id, record time))."""
    published = {
        event["id"]: at for at, event in await _read_all(bootstrap, TOPIC_PREFIX + CUSTODY_STATUS_CHANGED.name)
    }
    matched: dict[str, tuple[str, float]] = {}
    for at, event in await _read_all(bootstrap, TOPIC_PREFIX + NOTIFICATION_REQUESTED.name):
        data = event.get("data") or {}
        custody = data.get("custody") or {}
        if data.get("notification_id") and custody.get("custody_event_id"):
            matched[data["notification_id"]] = (custody["custody_event_id"], at)
    return published, matched


def breakdown(
    *,
    handoffs: Sequence[Handoff],
    changes: Mapping[int, Accepted],
    phase: str,
    published: Mapping[str, float],
    matched: Mapping[str, tuple[str, float]],
    history: Mapping[str, Mapping[str, float]],
) -> dict[str, Any]:
    """Per stage, p50/p95/p99 of the time spent in it by the phase's notices that have every timestamp."""
    durations: dict[str, list[float]] = {name: [] for name, _, _ in STAGES}
    for handoff in handoffs:
        change = changes.get(handoff.change)
        notice = matched.get(handoff.notification_id)
        stored = history.get(handoff.notification_id, {})
        if change is None or change.phase != phase or notice is None or notice[0] not in published:
            continue
        moments = {
            "accepted": change.at,
            "published": published[notice[0]],
            "matched": notice[1],
            "handed_off": handoff.at,
            **stored,
        }
        for name, begin, end in STAGES:
            if begin in moments and end in moments:
                durations[name].append(moments[end] - moments[begin])
    return {name: summarise(values) for name, values in durations.items()}
