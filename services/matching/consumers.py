"""Matching's Kafka side: what it consumes and produces, the handler, and the worker that runs them.

Every event is applied once (``handled_events``) in one database transaction that also records the notification
requests it caused, encoded byte for byte (:mod:`services.matching.flows`). The requests are then sent through the
transactional producer, inside the batch's Kafka transaction. If that transaction aborts (a crash, a failed send),
the batch is read again: the database already holds the effect, so the same message at the same position re-sends
exactly what it recorded, and a copy of the event at another position (an upstream duplicate) sends nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import asyncpg
from aiokafka import AIOKafkaProducer, ConsumerRecord

from services.matching import flows, metrics
from services.matching.clock import Clock, system_clock
from services.matching.store.handled_events import SourcePosition, claim_event
from services.matching.store.notifications import StoredNotification, notifications_caused_by
from shared.db import Connection
from shared.envelope import KAFKA_HEADERS, CloudEvent
from shared.events import Payload
from shared.failures import transient_dependency
from shared.kafka.consumer import ConsumerRunner, DecodedRecord
from shared.kafka.records import H_ORIGINAL_OFFSET, H_ORIGINAL_PARTITION, H_ORIGINAL_TOPIC, header
from shared.settings import KafkaSettings
from shared.topics import (
    AGENCY_PROFILE,
    CUSTODY_STATUS_CHANGED,
    FEED_SILENCE,
    NOTIFICATION_REQUESTED,
    SUBJECT_SEALED,
    SUBSCRIPTION_STATE,
    TopicSpec,
)

if TYPE_CHECKING:  # the settings take their default consumer group from here
    from services.matching.settings import MatchingSettings
    from shared.runtime import ServiceRuntime

log = logging.getLogger(__name__)

CONSUMER_GROUP = "matching"
"""The default of ``MATCHING_CONSUMER_GROUP`` (tests give each of theirs a group of its own)."""
CONSUMED_TOPICS: tuple[TopicSpec, ...] = (
    AGENCY_PROFILE,
    SUBSCRIPTION_STATE,
    CUSTODY_STATUS_CHANGED,
    SUBJECT_SEALED,
    FEED_SILENCE,
)
PRODUCED_TOPICS: tuple[TopicSpec, ...] = (NOTIFICATION_REQUESTED,)


@dataclass
class Decision:
    """An event's outcome and the notification requests to send for it (those it recorded, or, on a replay of
    the same message, those recorded the first time)."""

    event_id: str
    outcome: flows.Outcome
    to_send: list[StoredNotification]
    replay: bool = False
    duplicate: bool = False


def source_position(record: ConsumerRecord[bytes, bytes]) -> SourcePosition:
    """The position the event was first read at, also when it comes back through the retry topic."""
    topic = header(record, H_ORIGINAL_TOPIC)
    partition = header(record, H_ORIGINAL_PARTITION)
    offset = header(record, H_ORIGINAL_OFFSET)
    if topic is not None and partition is not None and offset is not None:
        return SourcePosition(topic=topic, partition=int(partition), offset=int(offset))
    return SourcePosition(topic=record.topic, partition=record.partition, offset=record.offset)


class Matcher:
    """Handles ``subscription.state``, ``custody.status-changed``, ``custody.subject-sealed``, agency profiles and
    feed silences."""

    def __init__(
        self, pool: asyncpg.Pool, kafka: KafkaSettings, producer: AIOKafkaProducer, clock: Clock = system_clock
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._producer = producer
        self._notification_topic = kafka.topic(NOTIFICATION_REQUESTED.name)
        self._sends: list[asyncio.Future[Any]] = []

    async def handle(self, event: CloudEvent[Payload], record: ConsumerRecord[bytes, bytes]) -> None:
        """One event in its own transaction (the fallback when a batch fails: the culprit is retried alone)."""
        now = self._clock()
        async with self._pool.acquire() as connection, connection.transaction():
            decision = await self._decide(connection, event, record, now)
        await self._conclude([decision])

    async def handle_batch(self, records: Sequence[DecodedRecord]) -> None:
        """A whole fetched batch in one transaction: one commit for hundreds of events instead of one each."""
        now = self._clock()
        decisions = []
        async with self._pool.acquire() as connection, connection.transaction():
            for event, record in records:
                decisions.append(await self._decide(connection, event, record, now))
        await self._conclude(decisions)

    async def _decide(
        self, connection: Connection, event: CloudEvent[Payload], record: ConsumerRecord[bytes, bytes], now: datetime
    ) -> Decision:
        position = source_position(record)
        first_seen_at = await claim_event(connection, event.id, position)
        if first_seen_at is None:
            outcome = await flows.apply(connection, event, now)
            encoded = [
                StoredNotification(notification_id=n.notification_id, value=value) for n, value in outcome.encoded
            ]
            return Decision(event.id, outcome, encoded)
        if first_seen_at == position:
            return Decision(event.id, flows.Outcome(), await notifications_caused_by(connection, event.id), replay=True)
        return Decision(event.id, flows.Outcome(skipped="duplicate_event"), [], duplicate=True)

    async def _conclude(self, decisions: list[Decision]) -> None:
        """After the commit: count, then send each decided notice inside the batch's Kafka transaction."""
        for decision in decisions:
            count(decision.outcome)
            if decision.duplicate:
                log.info("event %s already applied from another position; nothing to send", decision.event_id)
            if decision.replay:
                metrics.REPLAYED.inc(len(decision.to_send))
                log.info(
                    "event %s read again after an aborted transaction: re-sending %d",
                    decision.event_id,
                    len(decision.to_send),
                )
            for notification in decision.to_send:
                self._sends.append(await self._send(notification))

    async def _send(self, notification: StoredNotification) -> asyncio.Future[Any]:
        """A send that fails for another reason than an outage fails the batch's Kafka transaction, not the event.

        The event's effect is already committed: if its message went to the retry topic and on to the dead-letter
        topic, a replay would find it applied and send nothing. Aborted, the batch is read again at the same
        positions, and each event re-sends what it recorded.
        """
        try:
            future: asyncio.Future[Any] = await self._producer.send(
                self._notification_topic,
                key=notification.notification_id.encode(),
                value=notification.value,
                headers=KAFKA_HEADERS,
            )
        except Exception as error:
            if transient_dependency(error) is not None:
                raise  # the consumer waits for the broker and reads the batch again
            failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            failed.set_exception(error)
            return failed
        return future

    async def wait_for_sends(self) -> None:
        """Called before the batch's transaction commits; raises if any notification request was not written."""
        sends, self._sends = self._sends, []
        await asyncio.gather(*sends)


def count(outcome: flows.Outcome) -> None:
    """Matching's metrics for one applied event, once its transaction committed."""
    if outcome.skipped:
        metrics.SKIPPED.labels(outcome.skipped).inc()
    if outcome.skipped == flows.STALE_CHANGE:
        metrics.STALE_CHANGES.inc()
    for notice in outcome.notices:
        metrics.NOTIFICATIONS.labels(str(notice.kind), str(notice.channel), str(notice.urgency)).inc()
    if outcome.custody_change:
        metrics.FAN_OUT.observe(len(outcome.notices))
        if not outcome.matched:
            metrics.UNMATCHED.inc()


class MatchingWorker:
    """Owns the transactional producer and the consumer; restarted as one by the runtime if it crashes."""

    def __init__(self, runtime: ServiceRuntime, settings: MatchingSettings, clock: Clock) -> None:
        self._runtime = runtime
        self._settings = settings
        self._clock = clock
        self._producer: AIOKafkaProducer | None = None

    async def prepare(self) -> None:
        """Start the producer before the service reports ready.

        Starting a producer with our transactional id fences any predecessor with the same id and aborts its open
        transaction, so a restarted process never commits alongside its crashed self.
        """
        self._producer = await self._runtime.create_producer(transactional_id=self._settings.transactional_id)

    async def run(self) -> None:
        settings = self._settings
        producer, self._producer = self._producer, None
        if producer is None:  # restarted after a crash: a fresh producer, fencing the one that failed
            producer = await self._runtime.create_producer(transactional_id=settings.transactional_id)
        try:
            matcher = Matcher(self._runtime.pool, settings.kafka, producer, self._clock)
            runner = ConsumerRunner(
                settings.kafka,
                group_id=settings.consumer_group,
                topics=CONSUMED_TOPICS,
                handler=matcher.handle,
                batch_handler=matcher.handle_batch,
                producer=producer,
                batch_size=settings.batch_size,
                transactional=True,
                before_commit=matcher.wait_for_sends,
            )
            self._runtime.register_consumer(runner)
            await runner.run()
        finally:
            await producer.stop()
