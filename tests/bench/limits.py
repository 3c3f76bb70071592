"""The ceiling on the same machine, in the same run: raw aiokafka produce→consume and raw asyncpg inserts."""

from __future__ import annotations

import asyncio
import os
import struct
import time
import uuid
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shared.topics import CUSTODY_STATUS_CHANGED

STAMP = struct.Struct("<d")


async def message_sizes(bootstrap: str, topics: list[str], sample: int = 500) -> dict[str, float]:
    """Mean value size of up to ``sample`` committed messages on each topic (what the services really send)."""
    sizes: dict[str, float] = {}
    for topic in topics:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        await consumer.start()
        try:
            lengths: list[int] = []
            deadline = time.monotonic() + 10
            while len(lengths) < sample and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=1000, max_records=sample)
                for records in batches.values():
                    lengths.extend(len(record.value or b"") for record in records)
                if not batches and lengths:
                    break
            if lengths:
                sizes[topic] = sum(lengths) / len(lengths)
        finally:
            await consumer.stop()
    return sizes


async def kafka_round_trip(bootstrap: str, size: int, seconds: float) -> dict[str, Any]:
    """Produce (acks=all, as the services do) and consume ``size``-byte messages on a fresh topic for ``seconds``.

    The producer is paced by its own in-flight window, the consumer reads concurrently; the rate is messages
    consumed per second, the latency each message's produce→consume time.
    """
    topic = f"bench.raw.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, CUSTODY_STATUS_CHANGED.partitions, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=topic)
    await producer.start()
    await consumer.start()
    padding = os.urandom(max(0, size - STAMP.size))
    latencies: list[float] = []
    produced = 0
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=100)
        done = asyncio.Event()

        async def produce() -> None:
            nonlocal produced
            deadline = time.perf_counter() + seconds
            pending: list[asyncio.Future[Any]] = []
            while time.perf_counter() < deadline:
                pending.append(await producer.send(topic, STAMP.pack(time.perf_counter()) + padding))
                produced += 1
                if len(pending) >= 2000:
                    await asyncio.gather(*pending)
                    pending.clear()
            await asyncio.gather(*pending)
            done.set()

        async def consume() -> None:
            while not (done.is_set() and len(latencies) >= produced):
                batches = await consumer.getmany(timeout_ms=200, max_records=5000)
                now = time.perf_counter()
                for records in batches.values():
                    for record in records:
                        latencies.append(now - STAMP.unpack_from(record.value or bytes(STAMP.size))[0])

        started = time.perf_counter()
        await asyncio.gather(produce(), asyncio.wait_for(consume(), timeout=seconds + 60))
        elapsed = time.perf_counter() - started
    finally:
        await producer.stop()
        await consumer.stop()
    latencies.sort()
    return {
        "message_bytes": size,
        "messages": len(latencies),
        "seconds": round(elapsed, 3),
        "messages_per_second": round(len(latencies) / elapsed, 1),
        "latency_p50_ms": round(latencies[len(latencies) // 2] * 1000, 2) if latencies else None,
        "latency_p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2) if latencies else None,
    }


async def postgres_inserts(dsn: str, size: int, seconds: float, connections: int = 8) -> dict[str, Any]:
    """Rows/s two ways: one INSERT per commit from ``connections`` connections (commit-bound, like one event per
    transaction), and 1,000-row ``executemany`` transactions on one connection (the batched ceiling)."""
    payload = "x" * size
    setup = await asyncpg.connect(dsn)
    try:
        await setup.execute("DROP TABLE IF EXISTS bench_raw")
        await setup.execute("CREATE TABLE bench_raw (id uuid PRIMARY KEY, created_at timestamptz, payload text)")
    finally:
        await setup.close()
    pool = await asyncpg.create_pool(dsn, min_size=connections, max_size=connections)
    insert = "INSERT INTO bench_raw VALUES ($1, now(), $2)"
    try:

        async def single_commits() -> int:
            count = 0
            deadline = time.perf_counter() + seconds
            async with pool.acquire() as connection:
                while time.perf_counter() < deadline:
                    await connection.execute(insert, uuid.uuid4(), payload)
                    count += 1
            return count

        started = time.perf_counter()
        single = sum(await asyncio.gather(*(single_commits() for _ in range(connections))))
        single_rate = single / (time.perf_counter() - started)

        batched = 0
        started = time.perf_counter()
        async with pool.acquire() as connection:
            while time.perf_counter() - started < seconds:
                async with connection.transaction():
                    await connection.executemany(insert, [(uuid.uuid4(), payload) for _ in range(1000)])
                batched += 1000
        batched_rate = batched / (time.perf_counter() - started)
    finally:
        await pool.close()
    return {
        "row_bytes": size,
        "connections": connections,
        "single_row_commits_per_second": round(single_rate, 1),
        "batched_rows_per_second": round(batched_rate, 1),
    }
