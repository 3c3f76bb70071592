"""The consumer loop every service uses.

The loop commits offsets only after a batch is processed (at-least-once; handlers are idempotent). A message whose
handler fails on its own merits is re-published to the group's retry topic with a not-before time and its attempt
count, so it never blocks its partition; after ``max_attempts`` it is parked on the group's dead-letter topic with the
error (:mod:`shared.kafka.retry_topics`).

Straight to the dead-letter topic, without retries, goes a message that can never be processed:
- a poison message, which cannot be decoded (not JSON, not CloudEvents 1.0, a type no version of ours knows, a
  payload that breaks its schema);
- an event of a type the topic does not carry (each :class:`~shared.topics.TopicSpec` carries one payload type),
  or that the handler says it does not handle (:class:`UnexpectedEventError`). Event types are versioned in their
  names and an incompatible change is a new type on a new topic, so a foreign type on a topic is never "a newer
  version to skip": it is a contract break, kept on the dead-letter topic for operators, never silently dropped.

A failure of a dependency (:mod:`shared.failures`: the database or broker down, a provider unreachable) is not the
message's fault and never counts against it: the consumer commits what it finished, rewinds to the record that
stalled, reports itself degraded (``/readyz``, ``cw_consumer_degraded``) and tries the same records again after a
capped, jittered backoff, for as long as the outage lasts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from prometheus_client import Counter

from shared import metrics
from shared.backoff import Backoff
from shared.envelope import CloudEvent, EventDecodeError, decode
from shared.events import TYPE_OF, Payload
from shared.failures import transient_dependency
from shared.kafka.producer import start_with_retry
from shared.kafka.records import source_topic
from shared.kafka.retry_topics import RetryTopicPolicy, attempt_of, forward, not_before
from shared.logging import trace_context
from shared.settings import KafkaSettings
from shared.topics import TopicSpec, dead_letter_topic, retry_topic

log = logging.getLogger(__name__)

BATCH_FALLBACKS = Counter(
    "cw_consumer_batch_fallbacks_total",
    "Batches whose batch handler failed, so their events were handled one by one",
    ["group"],
)


class UnexpectedEventError(EventDecodeError):
    """An event of a type that has no business where it was read: dead-lettered at once, never retried.

    Handlers raise it for a type they do not handle (``raise UnexpectedEventError.of(event, record)``)."""

    @classmethod
    def of(cls, event: CloudEvent[Payload], record: ConsumerRecord[bytes, bytes]) -> UnexpectedEventError:
        return cls(f"the handler does not handle {event.type} (read on {source_topic(record)})")


DEPENDENCY_BACKOFF = Backoff(initial=0.5, maximum=15.0)
CLOSE_SECONDS = 10.0
"""How often a consumer stalled by an outage tries again: short enough to resume within seconds of the return,
well inside the broker's ``max.poll.interval.ms`` (we fetch again before each try)."""


Handler = Callable[[CloudEvent[Payload], ConsumerRecord[bytes, bytes]], Awaitable[None]]
Batch = dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
DecodedRecord = tuple[CloudEvent[Payload], ConsumerRecord[bytes, bytes]]
BatchHandler = Callable[[Sequence[DecodedRecord]], Awaitable[None]]


class _BatchFailedError(Exception):
    """The batch handler failed inside a Kafka transaction, which must be aborted before trying record by record."""


class _StalledError(Exception):
    """A dependency is down: the record handed to the handler (and all after it) must wait and be tried again."""

    def __init__(self, dependency: str, error: BaseException) -> None:
        super().__init__(f"{dependency} unavailable ({type(error).__name__})")
        self.dependency = dependency
        self.undone: Sequence[ConsumerRecord[bytes, bytes]] = ()


def _records(batch: Batch) -> list[ConsumerRecord[bytes, bytes]]:
    return [record for records in batch.values() for record in records]


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
        topics: Sequence[TopicSpec],
        handler: Handler,
        producer: AIOKafkaProducer,
        retry: RetryTopicPolicy | None = None,
        transactional: bool = False,
        batch_size: int = 500,
        before_commit: Callable[[], Awaitable[None]] | None = None,
        batch_handler: BatchHandler | None = None,
    ) -> None:
        self.settings = settings
        self.group_id = group_id
        self.producer = producer
        self._handler = handler
        self._retry = retry or RetryTopicPolicy()
        self._transactional = transactional
        self._batch_size = batch_size
        self._before_commit = before_commit
        self._batch_handler = batch_handler
        self._retry_topic = settings.topic(retry_topic(group_id))
        self._dead_letter_topic = settings.topic(dead_letter_topic(group_id))
        self.consumed_topics = tuple(topics)
        self._event_type_of = {settings.topic(spec.name): TYPE_OF[spec.payload] for spec in topics}
        self._topics = [*self._event_type_of, self._retry_topic]
        self._paused_until: dict[TopicPartition, float] = {}
        self._batch_lock = asyncio.Lock()
        self._assignment_generation = 0
        self._degraded: str | None = None
        self._stalled_at = 0.0
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
        stalls = 0
        try:
            while True:
                self._resume_due(consumer)
                batch = await consumer.getmany(timeout_ms=200, max_records=self._batch_size)
                # Read right after the fetch returns: a rebalance that completed while we waited is no reason to
                # drop the batch (its records belong to the new assignment).
                generation = self._assignment_generation
                stall = await self._process_batch(consumer, batch, generation) if batch else None
                if stall is not None:
                    stalls += 1
                    self._stalled(stall)
                    await asyncio.sleep(DEPENDENCY_BACKOFF.delay(stalls))
                elif batch or time.monotonic() - self._stalled_at > 2 * DEPENDENCY_BACKOFF.maximum:
                    stalls = 0
                    self._recovered()
        finally:
            self.ready.clear()
            self._recovered()
            await self._close(consumer)

    async def _close(self, consumer: AIOKafkaConsumer) -> None:
        """Close the consumer, giving up after :data:`CLOSE_SECONDS`: aiokafka's ``stop`` can wait forever on its
        heartbeat or coordinator task (aio-libs/aiokafka#773). The broker then ends the membership when the session
        times out, and the partitions go to another member as after a crash; nothing is lost, since offsets are
        committed only after their batch."""
        try:
            await asyncio.wait_for(consumer.stop(), timeout=CLOSE_SECONDS)
        except TimeoutError:
            log.error("%s: consumer not closed in %.0f s; left to its session timeout", self.group_id, CLOSE_SECONDS)

    @property
    def degraded(self) -> str | None:
        """Why the consumer is waiting (``database unavailable``…), or None while it flows."""
        return self._degraded

    def _decode(
        self, record: ConsumerRecord[bytes, bytes]
    ) -> tuple[CloudEvent[Payload] | None, EventDecodeError | None]:
        """The record's event, or why it must go straight to the dead-letter topic (see the module's docstring)."""
        try:
            event = decode(record.value)
        except EventDecodeError as error:
            return None, error
        topic = source_topic(record)
        expected = self._event_type_of.get(topic)
        if event.type != expected:
            carries = f"which carries only {expected}" if expected else "which it does not read"
            return None, UnexpectedEventError(
                f"{self.group_id} does not handle {event.type} on {topic}, {carries}: a contract break"
            )
        return event, None

    def _stalled(self, stall: _StalledError) -> None:
        if self._degraded is None:
            log.warning("%s: %s; waiting, the records are kept and tried again", self.group_id, stall)
        self._degraded = f"{stall.dependency} unavailable"
        self._stalled_at = time.monotonic()
        metrics.CONSUMER_DEPENDENCY_WAITS.labels(self.group_id, stall.dependency).inc()
        metrics.CONSUMER_DEGRADED.labels(self.group_id).set(1)

    def _recovered(self) -> None:
        if self._degraded is not None:
            log.info("%s: %s no longer; consuming again", self.group_id, self._degraded)
            self._degraded = None
            metrics.CONSUMER_DEGRADED.labels(self.group_id).set(0)

    async def _process_batch(self, consumer: AIOKafkaConsumer, batch: Batch, generation: int) -> _StalledError | None:
        """Process and commit a fetched batch; when a dependency stalled it, what is left of it was rewound to be
        read again and the stall is returned (the caller waits outside the lock, so a rebalance can go on)."""
        async with self._batch_lock:
            if generation != self._assignment_generation:
                self._rewind(consumer, batch)
                return None
            if self._transactional:
                try:
                    try:
                        await self._process_in_transaction(consumer, batch, as_batch=True)
                    except _BatchFailedError:
                        # The failed attempt's transaction was aborted with whatever it had sent: redo the batch
                        # record by record in a fresh one, so nothing is published twice.
                        await self._process_in_transaction(consumer, batch, as_batch=False)
                except _StalledError as stalled:
                    # The transaction was aborted with all it had done: the whole batch is read again.
                    self._rewind_records(consumer, _records(batch))
                    return stalled
                return None
            offsets, stall = await self._process_records(consumer, batch)
            if self._before_commit is not None:
                await self._before_commit()
            if offsets:
                await consumer.commit(offsets)
            if stall is not None:
                self._rewind_records(consumer, stall.undone)
            return stall

    async def _process_in_transaction(self, consumer: AIOKafkaConsumer, batch: Batch, *, as_batch: bool) -> None:
        async with self.producer.transaction():
            offsets, stall = await self._process_records(consumer, batch, as_batch=as_batch)
            if stall is not None:
                raise stall
            if self._before_commit is not None:
                await self._before_commit()
            if offsets:
                await self.producer.send_offsets_to_transaction(offsets, self.group_id)

    @staticmethod
    def _rewind(consumer: AIOKafkaConsumer, batch: Batch) -> None:
        """Leave a batch fetched before a rebalance unprocessed. Partitions we kept are rewound to its first
        record (the consumer's position had moved past it); the others resume from their committed offsets."""
        ConsumerRunner._rewind_records(consumer, _records(batch))
        log.info("left a batch fetched before a rebalance to be read again")

    @staticmethod
    def _rewind_records(consumer: AIOKafkaConsumer, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        """Seek each partition we still hold back to the first of ``records`` in it, to read them again."""
        assigned = consumer.assignment()
        first: dict[TopicPartition, int] = {}
        for record in records:
            partition = TopicPartition(record.topic, record.partition)
            first[partition] = min(first.get(partition, record.offset), record.offset)
        for partition, offset in first.items():
            if partition in assigned:
                consumer.seek(partition, offset)

    async def _process_records(
        self, consumer: AIOKafkaConsumer, batch: Batch, *, as_batch: bool = True
    ) -> tuple[dict[TopicPartition, OffsetAndMetadata], _StalledError | None]:
        """Process a fetched batch: the offsets its finished records reach, and the stall that stopped it early
        (its ``undone`` records were not processed). When the batch handler fails: in a transaction, raise
        :class:`_BatchFailedError` (the caller aborts and redoes it with ``as_batch=False``); else go on record
        by record at once."""
        due = self._due_records(consumer, batch)
        pending: list[asyncio.Future[Any]] = []
        done = due
        stall: _StalledError | None = None
        try:
            if self._batch_handler is not None and as_batch:
                pending = await self._process_as_batch(self._batch_handler, due)
            else:
                for index, record in enumerate(due):
                    try:
                        pending.extend(await self._process_one(record))
                    except _StalledError as stalled:
                        done, stall = due[:index], stalled
                        stall.undone = due[index:]
                        break
        except _StalledError as stalled:  # the batch handler applies all or nothing
            done, stall = [], stalled
            stall.undone = due
        if pending:
            await asyncio.gather(*pending)
        offsets = {
            TopicPartition(record.topic, record.partition): OffsetAndMetadata(record.offset + 1, "") for record in done
        }
        return offsets, stall

    def _due_records(self, consumer: AIOKafkaConsumer, batch: Batch) -> list[ConsumerRecord[bytes, bytes]]:
        """The batch's records to process now, in fetch order; retry partitions whose next record is not due yet
        are rewound to it and paused until it is (main topics flow on)."""
        due: list[ConsumerRecord[bytes, bytes]] = []
        for partition, records in batch.items():
            for record in records:
                retry_at = not_before(record)
                if partition.topic == self._retry_topic and retry_at is not None and retry_at > time.time():
                    consumer.seek(partition, record.offset)
                    consumer.pause(partition)
                    self._paused_until[partition] = retry_at
                    break
                due.append(record)
        return due

    async def _process_as_batch(
        self, batch_handler: BatchHandler, due: list[ConsumerRecord[bytes, bytes]]
    ) -> list[asyncio.Future[Any]]:
        poison: list[tuple[ConsumerRecord[bytes, bytes], EventDecodeError]] = []
        decoded: list[DecodedRecord] = []
        for record in due:
            event, error = self._decode(record)
            if error is not None:
                poison.append((record, error))
            elif event is not None:
                decoded.append((event, record))
        pending: list[asyncio.Future[Any]] = []
        if not await self._handle_as_batch(batch_handler, decoded):
            if self._transactional:
                raise _BatchFailedError
            for event, record in decoded:
                pending.extend(await self._handle_one(event, record))
        # Dead letters only once the batch went through: a batch stalled by an outage is read again whole.
        for record, error in poison:
            pending.append(await self._dead_letter_at_once(record, error))
        return pending

    async def _handle_as_batch(self, batch_handler: BatchHandler, decoded: list[DecodedRecord]) -> bool:
        """Apply the whole batch at once; False (after logging why) when it must be retried record by record."""
        if not decoded:
            return True
        started = time.perf_counter()
        try:
            await batch_handler(decoded)
        except Exception as error:  # a transient one stalls the batch; else the per-record path finds the culprit
            dependency = transient_dependency(error)
            if dependency is not None:
                raise _StalledError(dependency, error) from error
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
            labels = (self.group_id, source_topic(record))
            metrics.CONSUMER_PROCESSED.labels(*labels).inc()
            metrics.CONSUMER_SECONDS.labels(*labels).observe(share)
        return True

    async def _dead_letter_at_once(
        self, record: ConsumerRecord[bytes, bytes], error: EventDecodeError
    ) -> asyncio.Future[Any]:
        topic = source_topic(record)
        log.warning("dead-lettering a message of %s at once: %s", topic, error)
        metrics.CONSUMER_DEAD_LETTERED.labels(self.group_id, topic).inc()
        return await forward(self.producer, record, self._dead_letter_topic, error=str(error))

    async def _process_one(self, record: ConsumerRecord[bytes, bytes]) -> list[asyncio.Future[Any]]:
        event, error = self._decode(record)
        if error is not None:
            return [await self._dead_letter_at_once(record, error)]
        if event is None:
            return []
        return await self._handle_one(event, record)

    async def _handle_one(
        self, event: CloudEvent[Payload], record: ConsumerRecord[bytes, bytes]
    ) -> list[asyncio.Future[Any]]:
        labels = (self.group_id, source_topic(record))
        attempt = attempt_of(record)
        with trace_context(event.trace_id):
            started = time.perf_counter()
            try:
                await self._handler(event, record)
            except UnexpectedEventError as error:
                return [await self._dead_letter_at_once(record, error)]
            except Exception as error:  # an outage stalls; any other failure is retried, then dead-lettered
                dependency = transient_dependency(error)
                if dependency is not None:
                    raise _StalledError(dependency, error) from error
                reason = f"{type(error).__name__}: {error}"
                if attempt >= self._retry.max_attempts:
                    log.error("giving up on event %s after %d attempts: %s", event.id, attempt, reason)
                    metrics.CONSUMER_DEAD_LETTERED.labels(*labels).inc()
                    dead_letter = forward(self.producer, record, self._dead_letter_topic, error=reason, attempt=attempt)
                    return [await dead_letter]
                log.warning("event %s failed (attempt %d), will retry: %s", event.id, attempt, reason)
                metrics.CONSUMER_RETRIED.labels(*labels).inc()
                retry_at = time.time() + self._retry.delay(attempt)
                return [
                    await forward(
                        self.producer, record, self._retry_topic, error=reason, attempt=attempt + 1, retry_at=retry_at
                    )
                ]
            metrics.CONSUMER_PROCESSED.labels(*labels).inc()
            metrics.CONSUMER_SECONDS.labels(*labels).observe(time.perf_counter() - started)
        return []

    def _resume_due(self, consumer: AIOKafkaConsumer) -> None:
        now = time.time()
        for partition, until in list(self._paused_until.items()):
            if until <= now:
                consumer.resume(partition)
                del self._paused_until[partition]
