"""The shared consumer loop, made safe through rebalances for matching's exactly-once consume-produce.

aiokafka commits transactional offsets without the consumer group generation (no KIP-447 fencing), and a
rebalance does not wait for the batch in hand. So when a second process joins, the first could still commit a
batch whose partitions the second already re-reads: both would publish the same notification requests. Here a
rebalance listener makes revocation wait until the current batch's transaction has ended, and a batch fetched
before a revocation is left unprocessed, to be read again by whoever owns its partitions now.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition

from shared.kafka import ConsumerRunner, Handler, RetryPolicy, start_with_retry
from shared.settings import KafkaSettings

log = logging.getLogger(__name__)

Batch = dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]


class _WaitForBatchOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, runner: FencedConsumerRunner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._runner.end_of_assignment(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("assigned %d partitions", len(assigned))


class FencedConsumerRunner(ConsumerRunner):
    """A transactional :class:`ConsumerRunner` whose batches never overlap a rebalance."""

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        group_id: str,
        topics: list[str],
        handler: Handler,
        producer: AIOKafkaProducer,
        retry: RetryPolicy | None = None,
        batch_size: int = 500,
        before_commit: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(
            settings,
            group_id=group_id,
            topics=topics,
            handler=handler,
            producer=producer,
            retry=retry,
            transactional=True,
            batch_size=batch_size,
        )
        self._before_commit = before_commit
        self._batch_lock = asyncio.Lock()
        self._assignment_generation = 0

    async def end_of_assignment(self, revoked: set[TopicPartition]) -> None:
        """Called on revocation: wait for the batch in hand to commit or abort, then invalidate fetched ones."""
        async with self._batch_lock:
            self._assignment_generation += 1
        log.info("revoked %d partitions after the current batch ended", len(revoked))

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
                # Read right after the fetch returns: a rebalance that completed while we waited is not a reason
                # to drop the batch (its records belong to the new assignment).
                generation = self._assignment_generation
                if batch:
                    await self._process_fenced_batch(consumer, batch, generation)
        finally:
            self.ready.clear()
            await consumer.stop()

    async def _process_fenced_batch(self, consumer: AIOKafkaConsumer, batch: Batch, generation: int) -> None:
        async with self._batch_lock:
            if generation != self._assignment_generation:
                self._drop(consumer, batch)
                return
            async with self.producer.transaction():
                offsets = await self._process_records(consumer, batch)
                # Every send the handlers started must have succeeded before the transaction commits; if one
                # failed, raising here aborts the transaction and the batch is re-read.
                if self._before_commit is not None:
                    await self._before_commit()
                if offsets:
                    await self.producer.send_offsets_to_transaction(offsets, self.group_id)

    @staticmethod
    def _drop(consumer: AIOKafkaConsumer, batch: Batch) -> None:
        """Leave a batch fetched before a rebalance unprocessed. Partitions we kept are rewound to its first
        record (the consumer's position had moved past it); the others resume from their committed offsets."""
        assigned = consumer.assignment()
        for partition, records in batch.items():
            if partition in assigned and records:
                consumer.seek(partition, records[0].offset)
        log.info("left a batch fetched before a rebalance to be read again")
