"""Kafka clients built from settings, and the consumer loop every service uses.

The loop commits offsets only after a batch is processed (at-least-once; handlers are idempotent). A message whose
handler fails is re-published to the group's retry topic with a not-before time and its attempt count, so it never
blocks its partition; after ``max_attempts`` it is parked on the group's dead-letter topic with the error. A message
that cannot even be decoded (a poison message) goes straight to the dead-letter topic.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from prometheus_client import Counter

from shared import metrics
from shared.events import CloudEvent, EventDecodeError, Payload, decode
from shared.logging import trace_context
from shared.settings import KafkaSettings
from shared.topics import dead_letter_topic, retry_topic

log = logging.getLogger(__name__)

BATCH_FALLBACKS = Counter(
    "cw_consumer_batch_fallbacks_total",
    "Batches whose batch handler failed, so their events were handled one by one",
    ["group"],
)

H_ATTEMPT = "cw-attempt"
H_NOT_BEFORE = "cw-not-before"
H_ORIGINAL_TOPIC = "cw-original-topic"
H_ORIGINAL_PARTITION = "cw-original-partition"
H_ORIGINAL_OFFSET = "cw-original-offset"
H_ERROR = "cw-error"


async def start_with_retry(client: AIOKafkaProducer | AIOKafkaConsumer, attempts: int = 60) -> None:
    """Start a client, waiting for a broker that is (re)starting rather than failing the service."""
    for attempt in range(1, attempts + 1):
        try:
            await client.start()
            return
        except Exception as error:
            if attempt == attempts:
                raise
            log.warning("kafka not ready (%s); retrying", type(error).__name__)
            await asyncio.sleep(min(attempt, 5) * 0.5)


async def create_producer(settings: KafkaSettings, transactional_id: str | None = None) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(**settings.producer_kwargs(transactional_id))
    await start_with_retry(producer)
    return producer


def header(message: ConsumerRecord[bytes, bytes], name: str) -> str | None:
    for key, value in message.headers or ():
        if key == name:
            return str(value.decode(errors="replace"))
    return None


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 300.0

    def delay(self, attempt: int) -> float:
        """Exponential backoff with full jitter, so many failing messages do not retry in lockstep."""
        ceiling: float = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)


Handler = Callable[[CloudEvent[Payload], ConsumerRecord[bytes, bytes]], Awaitable[None]]
Batch = dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
DecodedRecord = tuple[CloudEvent[Payload], ConsumerRecord[bytes, bytes]]
BatchHandler = Callable[[Sequence[DecodedRecord]], Awaitable[None]]


class _BatchFailedError(Exception):
    """The batch handler failed inside a Kafka transaction, which must be aborted before trying record by record."""


class _WaitForBatchOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, runner: ConsumerRunner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._runner.end_of_assignment(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("%s: assigned %d partitions", self._runner.group_id, len(assigned))


class ConsumerRunner:
    """Consume ``topics`` (base names) for ``group_id`` and hand each decoded event to ``handler``.

    With ``transactional=True`` the producer must be transactional: every batch's retries, dead letters, whatever
    the handler sends through :attr:`producer`, and the consumed offsets commit atomically (exactly once);
    ``before_commit`` runs just before, so a handler's pending sends can be awaited (raising aborts the batch).

    With ``batch_handler`` every decodable, due record of a fetched batch goes to it at once, in fetch order (one
    database transaction for hundreds of events instead of one each). If it raises, the batch falls back to
    ``handler`` record by record, so a record that fails goes to the retry topic alone and the rest are applied:
    both handlers must therefore be idempotent for the same event. Offsets are committed only after either path.
    In a transactional runner the failed attempt's transaction is aborted first (discarding what it sent), and the
    batch is redone record by record in a new one.

    Batches never straddle a rebalance: revocation waits until the batch in hand has committed, and a batch
    fetched before a revocation is left unprocessed, to be read again by whoever owns its partitions now. (aiokafka
    commits transactional offsets without the group generation, so without this two processes could both publish
    one batch's results while the group rebalances.)
    """

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        group_id: str,
        topics: list[str],
        handler: Handler,
        producer: AIOKafkaProducer,
        retry: RetryPolicy | None = None,
        transactional: bool = False,
        batch_size: int = 500,
        before_commit: Callable[[], Awaitable[None]] | None = None,
        batch_handler: BatchHandler | None = None,
    ) -> None:
        self.settings = settings
        self.group_id = group_id
        self.producer = producer
        self._handler = handler
        self._retry = retry or RetryPolicy()
        self._transactional = transactional
        self._batch_size = batch_size
        self._before_commit = before_commit
        self._batch_handler = batch_handler
        self._retry_topic = settings.topic(retry_topic(group_id))
        self._dead_letter_topic = settings.topic(dead_letter_topic(group_id))
        self._topics = [settings.topic(name) for name in topics] + [self._retry_topic]
        self._paused_until: dict[TopicPartition, float] = {}
        self._batch_lock = asyncio.Lock()
        self._assignment_generation = 0
        self.consumer: AIOKafkaConsumer | None = None
        self.ready = asyncio.Event()

    async def end_of_assignment(self, revoked: set[TopicPartition]) -> None:
        """On revocation: wait for the batch in hand to commit or abort, then invalidate batches already fetched."""
        async with self._batch_lock:
            self._assignment_generation += 1
        log.info("%s: %d partitions revoked after the current batch ended", self.group_id, len(revoked))

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(**self.settings.consumer_kwargs(self.group_id, read_committed=True))
        consumer.subscribe(self._topics, listener=_WaitForBatchOnRevoke(self))
        await start_with_retry(consumer)
        self.consumer = consumer
        self.ready.set()
        try:
            while True:
                self._resume_due(consumer)
                batch = await consumer.getmany(timeout_ms=200, max_records=self._batch_size)
                # Read right after the fetch returns: a rebalance that completed while we waited is no reason to
                # drop the batch (its records belong to the new assignment).
                generation = self._assignment_generation
                if batch:
                    await self._process_batch(consumer, batch, generation)
        finally:
            self.ready.clear()
            await consumer.stop()

    async def _process_batch(self, consumer: AIOKafkaConsumer, batch: Batch, generation: int) -> None:
        async with self._batch_lock:
            if generation != self._assignment_generation:
                self._rewind(consumer, batch)
                return
            if self._transactional:
                try:
                    await self._process_in_transaction(consumer, batch, as_batch=True)
                except _BatchFailedError:
                    # The failed attempt's transaction was aborted with whatever it had sent: redo the batch
                    # record by record in a fresh one, so nothing is published twice.
                    await self._process_in_transaction(consumer, batch, as_batch=False)
            else:
                offsets = await self._process_records(consumer, batch)
                if self._before_commit is not None:
                    await self._before_commit()
                if offsets:
                    await consumer.commit(offsets)

    async def _process_in_transaction(self, consumer: AIOKafkaConsumer, batch: Batch, *, as_batch: bool) -> None:
        async with self.producer.transaction():
            offsets = await self._process_records(consumer, batch, as_batch=as_batch)
            if self._before_commit is not None:
                await self._before_commit()
            if offsets:
                await self.producer.send_offsets_to_transaction(offsets, self.group_id)

    @staticmethod
    def _rewind(consumer: AIOKafkaConsumer, batch: Batch) -> None:
        """Leave a batch fetched before a rebalance unprocessed. Partitions we kept are rewound to its first
        record (the consumer's position had moved past it); the others resume from their committed offsets."""
        assigned = consumer.assignment()
        for partition, records in batch.items():
            if partition in assigned and records:
                consumer.seek(partition, records[0].offset)
        log.info("left a batch fetched before a rebalance to be read again")

    async def _process_records(
        self, consumer: AIOKafkaConsumer, batch: Batch, *, as_batch: bool = True
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        """Process a fetched batch; the offsets to commit. When the batch handler fails: in a transaction, raise
        :class:`_BatchFailedError` (the caller aborts and redoes it with ``as_batch=False``); else go on record
        by record at once."""
        due, offsets = self._due_records(consumer, batch)
        pending: list[asyncio.Future[Any]] = []
        if self._batch_handler is not None and as_batch:
            pending = await self._process_as_batch(self._batch_handler, due)
        else:
            for record in due:
                pending.extend(await self._process_one(record))
        if pending:
            await asyncio.gather(*pending)
        return offsets

    def _due_records(
        self, consumer: AIOKafkaConsumer, batch: Batch
    ) -> tuple[list[ConsumerRecord[bytes, bytes]], dict[TopicPartition, OffsetAndMetadata]]:
        """The batch's records to process now, and the offsets that processing them reaches."""
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        due: list[ConsumerRecord[bytes, bytes]] = []
        for partition, records in batch.items():
            for record in records:
                not_before = header(record, H_NOT_BEFORE)
                if partition.topic == self._retry_topic and not_before and float(not_before) > time.time():
                    # Not due yet: rewind, and pause this retry partition until it is (main topics flow on).
                    consumer.seek(partition, record.offset)
                    consumer.pause(partition)
                    self._paused_until[partition] = float(not_before)
                    break
                due.append(record)
                offsets[partition] = OffsetAndMetadata(record.offset + 1, "")
        return due, offsets

    async def _process_as_batch(
        self, batch_handler: BatchHandler, due: list[ConsumerRecord[bytes, bytes]]
    ) -> list[asyncio.Future[Any]]:
        pending: list[asyncio.Future[Any]] = []
        decoded: list[DecodedRecord] = []
        for record in due:
            event, dead_letter = await self._decode(record)
            if dead_letter is not None:
                pending.append(dead_letter)
            elif event is not None:
                decoded.append((event, record))
        if not await self._handle_as_batch(batch_handler, decoded):
            if self._transactional:
                raise _BatchFailedError
            for event, record in decoded:
                pending.extend(await self._handle_one(event, record))
        return pending

    async def _handle_as_batch(self, batch_handler: BatchHandler, decoded: list[DecodedRecord]) -> bool:
        """Apply the whole batch at once; False (after logging why) when it must be retried record by record."""
        if not decoded:
            return True
        started = time.perf_counter()
        try:
            await batch_handler(decoded)
        except Exception as error:  # noqa: BLE001 - the per-record path finds the culprit and retries it alone
            log.warning(
                "%s: batch of %d events failed (%s); handling them one by one",
                self.group_id,
                len(decoded),
                type(error).__name__,
            )
            BATCH_FALLBACKS.labels(self.group_id).inc()
            return False
        share = (time.perf_counter() - started) / len(decoded)
        for _, record in decoded:
            labels = (self.group_id, header(record, H_ORIGINAL_TOPIC) or record.topic)
            metrics.CONSUMER_PROCESSED.labels(*labels).inc()
            metrics.CONSUMER_SECONDS.labels(*labels).observe(share)
        return True

    async def _decode(
        self, record: ConsumerRecord[bytes, bytes]
    ) -> tuple[CloudEvent[Payload] | None, asyncio.Future[Any] | None]:
        """The record's event, or (for a poison message) the pending send of its dead letter."""
        try:
            return decode(record.value), None
        except EventDecodeError as error:
            source_topic = header(record, H_ORIGINAL_TOPIC) or record.topic
            log.warning("poison message on %s: %s", source_topic, error)
            metrics.CONSUMER_DEAD_LETTERED.labels(self.group_id, source_topic).inc()
            return None, await self._forward(record, self._dead_letter_topic, error=str(error))

    async def _process_one(self, record: ConsumerRecord[bytes, bytes]) -> list[asyncio.Future[Any]]:
        event, dead_letter = await self._decode(record)
        if dead_letter is not None:
            return [dead_letter]
        if event is None:
            return []
        return await self._handle_one(event, record)

    async def _handle_one(
        self, event: CloudEvent[Payload], record: ConsumerRecord[bytes, bytes]
    ) -> list[asyncio.Future[Any]]:
        source_topic = header(record, H_ORIGINAL_TOPIC) or record.topic
        labels = (self.group_id, source_topic)
        attempt = int(header(record, H_ATTEMPT) or 1)
        with trace_context(event.traceid):
            started = time.perf_counter()
            try:
                await self._handler(event, record)
            except Exception as error:  # noqa: BLE001 - any handler failure is retried, then dead-lettered
                reason = f"{type(error).__name__}: {error}"
                if attempt >= self._retry.max_attempts:
                    log.error("giving up on event %s after %d attempts: %s", event.id, attempt, reason)
                    metrics.CONSUMER_DEAD_LETTERED.labels(*labels).inc()
                    return [await self._forward(record, self._dead_letter_topic, error=reason, attempt=attempt)]
                log.warning("event %s failed (attempt %d), will retry: %s", event.id, attempt, reason)
                metrics.CONSUMER_RETRIED.labels(*labels).inc()
                not_before = time.time() + self._retry.delay(attempt)
                return [
                    await self._forward(
                        record, self._retry_topic, error=reason, attempt=attempt + 1, not_before=not_before
                    )
                ]
            metrics.CONSUMER_PROCESSED.labels(*labels).inc()
            metrics.CONSUMER_SECONDS.labels(*labels).observe(time.perf_counter() - started)
        return []

    async def _forward(
        self,
        record: ConsumerRecord[bytes, bytes],
        topic: str,
        *,
        error: str,
        attempt: int | None = None,
        not_before: float | None = None,
    ) -> asyncio.Future[Any]:
        """Copy a record to the retry or dead-letter topic, keeping where it first came from."""
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
        if not_before is not None:
            headers.append((H_NOT_BEFORE, f"{not_before:.3f}".encode()))
        future: asyncio.Future[Any] = await self.producer.send(
            topic, value=record.value, key=record.key, headers=headers
        )
        return future

    def _resume_due(self, consumer: AIOKafkaConsumer) -> None:
        now = time.time()
        for partition, until in list(self._paused_until.items()):
            if until <= now:
                consumer.resume(partition)
                del self._paused_until[partition]
