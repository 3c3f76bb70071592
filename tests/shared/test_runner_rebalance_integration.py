"""The consumer loop against real Kafka: a batch overtaken by a rebalance is read again, never skipped."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from shared.envelope import CloudEvent, encode
from shared.events import Payload
from shared.kafka.consumer import Batch, ConsumerRunner
from shared.kafka.producer import create_producer
from shared.settings import KafkaSettings
from shared.topics import CUSTODY_STATUS_CHANGED, consumer_group_topics, ensure_topics
from tests.kafkautil import produce_raw, running
from tests.matching.helpers import wait_until
from tests.shared.test_plumbing_integration import custody_event

pytestmark = pytest.mark.integration


class RevokedOnceRunner(ConsumerRunner):
    """Behaves as if a rebalance (keeping every partition) happened between the first fetch and its processing."""

    overtaken = False

    async def _process_batch(self, consumer: AIOKafkaConsumer, batch: Batch, generation: int) -> None:
        if not self.overtaken:
            self.overtaken = True
            await self.end_of_assignment(set())
        await super()._process_batch(consumer, batch, generation)


async def test_a_batch_overtaken_by_a_rebalance_is_read_again(kafka_settings: KafkaSettings, unique: str) -> None:
    group = f"runner-{unique}"
    await ensure_topics(kafka_settings, [CUSTODY_STATUS_CHANGED, *consumer_group_topics(group)])
    events = [custody_event(n, subject=f"s-{n}") for n in range(10)]
    await produce_raw(
        kafka_settings,
        kafka_settings.topic(CUSTODY_STATUS_CHANGED.name),
        [(b"one-partition", encode(event)) for event in events],
    )
    seen: list[str] = []

    async def handle(event: CloudEvent[Payload], record: ConsumerRecord[bytes, bytes]) -> None:
        seen.append(event.id)

    producer = await create_producer(kafka_settings, transactional_id=f"runner-{unique}")
    runner = RevokedOnceRunner(
        kafka_settings,
        group_id=group,
        topics=[CUSTODY_STATUS_CHANGED],
        handler=handle,
        producer=producer,
        transactional=True,
    )
    async with running(runner):

        async def all_seen() -> bool:
            return len(seen) >= len(events)

        await wait_until(all_seen, what="every event handled after the dropped batch")
        await asyncio.sleep(1)
        assert runner.overtaken
        assert seen == [event.id for event in events]
