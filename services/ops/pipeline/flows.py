"""Kafka as operators see it: consumer lag per group and topic, dead-letter topics, replaying a dead letter, and the
dashboard's pipeline section."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.ops import metrics
from services.ops.audit.store import audit
from services.ops.pipeline import store
from services.ops.pipeline.domain import (
    AlreadyReplayedError,
    DeadLetter,
    PipelineSnapshot,
    ReplayNotFoundError,
    ReplayRefusedError,
    consumer_lag,
    describe_dead_letter,
    replay_headers,
    replay_target,
    strip_prefix,
)
from services.ops.schemas import DeadLetterQueue, DeadLetterView, Lag, PipelineSection
from services.ops.settings import OpsSettings
from shared.db import Connection
from shared.kafka.records import H_ORIGINAL_TOPIC, header
from shared.topics import ALL_TOPICS, dead_letter_topic

log = logging.getLogger(__name__)


class PipelineMonitor:
    def __init__(self, settings: OpsSettings) -> None:
        self._settings = settings
        self._kafka = settings.kafka
        self.snapshot = PipelineSnapshot()

    @property
    def dead_letter_topics(self) -> dict[str, str]:
        """Base name of each watched dead-letter topic -> its consumer group."""
        return {dead_letter_topic(group): group for group in self._settings.consumer_groups}

    def _consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            **self._kafka.common_kwargs(),
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )

    async def run(self) -> None:
        admin = AIOKafkaAdminClient(**self._kafka.common_kwargs())
        consumer = self._consumer()
        await admin.start()
        await consumer.start()
        try:
            while True:
                try:
                    self.snapshot = await self.read(admin, consumer)
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # noqa: BLE001 - shown on the dashboard; the next round tries again
                    log.warning("reading consumer lag failed: %s", error)
                    self.snapshot.error = f"{type(error).__name__}: {error}"
                await asyncio.sleep(self._settings.pipeline_poll_interval_seconds)
        finally:
            await consumer.stop()
            await admin.close()

    async def read(self, admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer) -> PipelineSnapshot:
        prefix = self._kafka.topic_prefix
        committed: dict[str, dict[tuple[str, int], int]] = {}
        for group in self._settings.consumer_groups:
            offsets = await admin.list_consumer_group_offsets(group)
            committed[group] = {
                (tp.topic, tp.partition): meta.offset
                for tp, meta in offsets.items()
                if meta.offset >= 0 and strip_prefix(tp.topic, prefix) is not None
            }
        # Describe only topics that exist: asking the broker about a missing one may auto-create it.
        existing = set(await admin.list_topics())
        dlq_full = [self._kafka.topic(name) for name in self.dead_letter_topics if self._kafka.topic(name) in existing]
        described = await admin.describe_topics(dlq_full) if dlq_full else []
        dlq_partitions = [
            TopicPartition(topic["topic"], partition["partition"])
            for topic in described
            if not topic.get("error_code")
            for partition in topic.get("partitions", [])
        ]
        lag_partitions = {TopicPartition(t, p) for offsets in committed.values() for (t, p) in offsets}
        wanted = sorted(lag_partitions | set(dlq_partitions))
        end = await consumer.end_offsets(wanted) if wanted else {}
        begin = await consumer.beginning_offsets(dlq_partitions) if dlq_partitions else {}
        end_by_key = {(tp.topic, tp.partition): offset for tp, offset in end.items()}

        snapshot = PipelineSnapshot(checked_at=datetime.now(UTC))
        for group, offsets in committed.items():
            for topic, lag in consumer_lag(offsets, end_by_key).items():
                base = strip_prefix(topic, prefix) or topic
                snapshot.lag[(group, base)] = lag
                metrics.CONSUMER_LAG.labels(group, base).set(lag)
        for base, group in self.dead_letter_topics.items():
            partitions = [tp for tp in dlq_partitions if tp.topic == self._kafka.topic(base)]
            size = sum(end[tp] - begin[tp] for tp in partitions)
            snapshot.dlq_sizes[group] = size
            metrics.DLQ_SIZE.labels(group).set(size)
            snapshot.dead_letters[group] = await self._newest(consumer, partitions, begin, end) if size else []
        return snapshot

    async def _newest(
        self,
        consumer: AIOKafkaConsumer,
        partitions: list[TopicPartition],
        begin: dict[TopicPartition, int],
        end: dict[TopicPartition, int],
    ) -> list[DeadLetter]:
        shown = self._settings.dead_letters_shown
        consumer.assign(partitions)
        remaining: set[TopicPartition] = set()
        for tp in partitions:
            consumer.seek(tp, max(begin[tp], end[tp] - shown))
            if end[tp] > begin[tp]:
                remaining.add(tp)
        letters: list[DeadLetter] = []
        deadline = asyncio.get_running_loop().time() + 5
        while remaining and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(*remaining, timeout_ms=500)
            for tp, records in batch.items():
                for record in records:
                    if record.offset < end[tp]:
                        letters.append(describe_dead_letter(record, self._kafka.topic_prefix))
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
        letters.sort(key=lambda letter: (letter.timestamp, letter.offset), reverse=True)
        return letters[:shown]

    async def replay(
        self,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        *,
        dlq_topic: str,
        partition: int,
        offset: int,
        username: str,
    ) -> str:
        """Re-publish one dead letter to its original topic, once, audited; returns the target's base name."""
        if dlq_topic not in self.dead_letter_topics:
            raise ReplayRefusedError(f"{dlq_topic!r} is not a watched dead-letter topic")
        full_topic = self._kafka.topic(dlq_topic)
        record = await self._read_one(TopicPartition(full_topic, partition), offset)
        target = replay_target(
            header(record, H_ORIGINAL_TOPIC), self._kafka.topic_prefix, [spec.name for spec in ALL_TOPICS]
        )
        base_target = strip_prefix(target, self._kafka.topic_prefix) or target
        headers = replay_headers(
            record.headers or (), dlq_topic=dlq_topic, partition=partition, offset=offset, username=username
        )
        async with pool.acquire() as connection, connection.transaction():
            if not await store.claim_replay(
                connection, dlq_topic, partition, offset, target=base_target, username=username
            ):
                raise AlreadyReplayedError(f"{dlq_topic} partition {partition} offset {offset} was replayed already")
            await producer.send_and_wait(target, value=record.value, key=record.key, headers=headers)
            await audit(
                connection,
                username,
                "replay_dead_letter",
                f"{dlq_topic}:{partition}:{offset}",
                outcome="ok",
                detail={"to": base_target, "event_id": describe_dead_letter(record, self._kafka.topic_prefix).event_id},
            )
        log.info("dead letter %s:%d:%d replayed to %s by %s", dlq_topic, partition, offset, base_target, username)
        return base_target

    async def _partitions(self, topic: str) -> set[int]:
        admin = AIOKafkaAdminClient(**self._kafka.common_kwargs())
        await admin.start()
        try:
            if topic not in await admin.list_topics():
                return set()
            (described,) = await admin.describe_topics([topic])
        finally:
            await admin.close()
        if described.get("error_code"):
            return set()
        return {partition["partition"] for partition in described.get("partitions", [])}

    async def _read_one(self, tp: TopicPartition, offset: int) -> ConsumerRecord[bytes, bytes]:
        if tp.partition not in await self._partitions(tp.topic):
            raise ReplayNotFoundError(f"{tp.topic} has no partition {tp.partition}")
        consumer = self._consumer()
        await consumer.start()
        try:
            consumer.assign([tp])
            begin = (await consumer.beginning_offsets([tp]))[tp]
            end = (await consumer.end_offsets([tp]))[tp]
            if not begin <= offset < end:
                raise ReplayNotFoundError(f"no message at offset {offset} (the topic holds {begin}..{end - 1})")
            consumer.seek(tp, offset)
            deadline = asyncio.get_running_loop().time() + 10
            while asyncio.get_running_loop().time() < deadline:
                batch = await consumer.getmany(tp, timeout_ms=500, max_records=1)
                for record in batch.get(tp, []):
                    if record.offset == offset:
                        return record
                    raise ReplayNotFoundError(f"no message at offset {offset} (it was removed or aborted)")
            raise ReplayNotFoundError(f"timed out reading offset {offset}")
        finally:
            await consumer.stop()


async def pipeline_section(connection: Connection, monitor: PipelineMonitor) -> PipelineSection:
    snapshot = monitor.snapshot
    replayed = await store.replayed_offsets(connection)
    queues = []
    for group, size in sorted(snapshot.dlq_sizes.items()):
        newest = []
        for letter in snapshot.dead_letters.get(group, []):
            replay = replayed.get((letter.topic, letter.partition, letter.offset))
            newest.append(
                DeadLetterView.model_validate(
                    letter.model_dump()
                    | {"replayed_by": replay.username if replay else None, "replayed_at": replay.at if replay else None}
                )
            )
        queues.append(DeadLetterQueue(group=group, topic=dead_letter_topic(group), size=size, newest=newest))
    return PipelineSection(
        lag=[Lag(group=group, topic=topic, lag=lag) for (group, topic), lag in sorted(snapshot.lag.items())],
        dead_letter_queues=queues,
        error=snapshot.error,
        checked_at=snapshot.checked_at,
    )
