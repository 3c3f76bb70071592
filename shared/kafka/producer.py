"""The one way a service builds a Kafka producer: started once the broker answers, limited to the topics the service
declares it writes, every record marked as a structured-mode CloudEvent."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from typing_extensions import override

from shared.backoff import Backoff, until_available
from shared.envelope import KAFKA_HEADERS
from shared.settings import KafkaSettings

Headers = Sequence[tuple[str, bytes]]


class UndeclaredTopicError(ValueError):
    """A service tried to write to a topic it does not declare in its ``PRODUCED_TOPICS`` (a wiring bug)."""


async def start_with_retry(client: AIOKafkaProducer | AIOKafkaConsumer) -> None:
    """Start a client, waiting for a broker that is (re)starting, however long, rather than failing the service."""
    await until_available(client.start, what="kafka client start", backoff=Backoff(initial=0.5, maximum=5.0))


def with_content_type(headers: Headers | None) -> list[tuple[str, bytes]]:
    """``headers`` with the structured-mode ``content-type`` of the CloudEvents Kafka binding, exactly once."""
    kept = [(key, value) for key, value in headers or () if key != "content-type"]
    return [*KAFKA_HEADERS, *kept]


class EventProducer(AIOKafkaProducer):  # type: ignore[misc]  # aiokafka is untyped
    """A producer that refuses topics outside ``allowed_topics`` (full names; None allows any) and gives every
    record the ``content-type`` header, so no caller can forget it."""

    def __init__(self, *, allowed_topics: Collection[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.allowed_topics = frozenset(allowed_topics) if allowed_topics is not None else None

    def check_topic(self, topic: str) -> None:
        if self.allowed_topics is not None and topic not in self.allowed_topics:
            raise UndeclaredTopicError(
                f"refusing to write to {topic!r}: this service declares only {sorted(self.allowed_topics)}"
            )

    @override
    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Headers | None = None,
    ) -> Any:
        self.check_topic(topic)
        return await super().send(topic, value, key, partition, timestamp_ms, with_content_type(headers))

    @override
    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> Any:
        self.check_topic(topic)
        return await super().send_batch(batch, topic, partition=partition)


async def create_producer(
    settings: KafkaSettings, transactional_id: str | None = None, *, allowed_topics: Collection[str] | None = None
) -> EventProducer:
    """A started producer; ``allowed_topics`` are base names (the settings' prefix is added)."""
    allowed = None if allowed_topics is None else {settings.topic(name) for name in allowed_topics}
    producer = EventProducer(allowed_topics=allowed, **settings.producer_kwargs(transactional_id))
    await start_with_retry(producer)
    return producer
