"""Small helpers for tests that read and write real Kafka topics."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from shared.kafka.consumer import ConsumerRunner
from shared.settings import KafkaSettings


async def read_topic(
    settings: KafkaSettings,
    topic: str,
    *,
    until: Callable[[list[ConsumerRecord[bytes, bytes]]], bool],
    timeout: float = 30.0,
    read_committed: bool = True,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read a topic (full name) from the beginning until ``until(records)`` holds; fails after ``timeout``."""
    consumer = AIOKafkaConsumer(
        topic,
        **settings.consumer_kwargs(f"reader-{uuid.uuid4().hex[:8]}", read_committed=read_committed),
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + timeout
    try:
        while not until(records):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out reading {topic}: {len(records)} records so far")
            batch = await consumer.getmany(timeout_ms=200)
            for partition_records in batch.values():
                records.extend(partition_records)
    finally:
        await consumer.stop()
    return records


async def read_exactly(
    settings: KafkaSettings, topic: str, count: int, *, settle: float = 1.0, timeout: float = 30.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read ``count`` records, then wait ``settle`` seconds more to prove no extra record follows."""
    records = await read_topic(settings, topic, until=lambda r: len(r) >= count, timeout=timeout)
    await asyncio.sleep(settle)
    return await read_topic(settings, topic, until=lambda r: len(r) >= len(records), timeout=timeout)


async def produce_raw(settings: KafkaSettings, topic: str, messages: list[tuple[bytes | None, bytes | None]]) -> None:
    """Write raw (key, value) pairs, in order, to a topic (full name)."""
    producer = AIOKafkaProducer(**settings.producer_kwargs())
    await producer.start()
    try:
        for key, value in messages:
            await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()


@asynccontextmanager
async def running(runner: ConsumerRunner) -> AsyncIterator[asyncio.Task[None]]:
    """Run a consumer (started and assigned its topics) for the block; then stop it and its producer."""
    task = asyncio.create_task(runner.run())
    try:
        await asyncio.wait_for(runner.ready.wait(), timeout=30)
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await runner.producer.stop()


PRODUCTION_KAFKA = KafkaSettings(
    bootstrap_servers="kafka.example.org:9093",
    security_protocol="SASL_SSL",
    sasl_username="service",
    sasl_password="Qm3x-Vt8pLr2WzKc9YhN5sDf7JgA4bUe",
)
"""Kafka settings a production check accepts: SASL over TLS with a real-looking password (never connected to)."""
