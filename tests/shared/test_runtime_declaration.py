"""A service's declaration of what it consumes and produces is enforced by its runtime and its producers."""

from __future__ import annotations

import pytest
from aiokafka import ConsumerRecord

from shared.envelope import CloudEvent
from shared.events import Payload
from shared.kafka.consumer import ConsumerRunner
from shared.kafka.producer import EventProducer, UndeclaredTopicError, with_content_type
from shared.runtime import ServiceRuntime, WiringError
from shared.settings import KafkaSettings, ServiceSettings
from shared.topics import AGENCY_PROFILE, CUSTODY_STATUS_CHANGED, SUBJECT_SEALED, TopicSpec

SETTINGS = ServiceSettings(kafka=KafkaSettings(topic_prefix="p."))


async def ignore(_: CloudEvent[Payload], __: ConsumerRecord[bytes, bytes]) -> None:
    return None


def runner(group: str, topics: list[TopicSpec]) -> ConsumerRunner:
    return ConsumerRunner(SETTINGS.kafka, group_id=group, topics=topics, handler=ignore, producer=None)


def declared_runtime() -> ServiceRuntime:
    return ServiceRuntime(
        SETTINGS,
        name="svc",
        migrations=[],
        consumer_group="svc",
        consumed_topics=[CUSTODY_STATUS_CHANGED, AGENCY_PROFILE],
        produced_topics=[SUBJECT_SEALED],
    )


def test_a_consumer_matching_the_declaration_is_registered_once_per_group() -> None:
    runtime = declared_runtime()
    first, again = (
        runner("svc", [AGENCY_PROFILE, CUSTODY_STATUS_CHANGED]),
        runner("svc", [CUSTODY_STATUS_CHANGED, AGENCY_PROFILE]),
    )
    runtime.register_consumer(first)
    runtime.register_consumer(again)
    assert runtime.consumers == [again], "a restarted consumer replaces its predecessor in readiness"


@pytest.mark.parametrize(
    ("group", "topics"),
    [
        ("svc", [CUSTODY_STATUS_CHANGED]),
        ("svc", [CUSTODY_STATUS_CHANGED, AGENCY_PROFILE, SUBJECT_SEALED]),
        ("other", [CUSTODY_STATUS_CHANGED, AGENCY_PROFILE]),
    ],
)
def test_a_consumer_that_differs_from_the_declaration_is_refused(group: str, topics: list[TopicSpec]) -> None:
    with pytest.raises(WiringError, match="declares"):
        declared_runtime().register_consumer(runner(group, topics))


def test_consuming_needs_a_group() -> None:
    with pytest.raises(WiringError, match="without a consumer group"):
        ServiceRuntime(SETTINGS, name="svc", migrations=[], consumed_topics=[CUSTODY_STATUS_CHANGED])
    producing_only = ServiceRuntime(SETTINGS, name="svc", migrations=[], produced_topics=[SUBJECT_SEALED])
    with pytest.raises(WiringError, match="declares group None"):
        producing_only.register_consumer(runner("svc", []))


def test_producers_may_write_the_produced_topics_and_the_groups_retry_and_dead_letter_topics() -> None:
    assert declared_runtime().writable_topics == [SUBJECT_SEALED.name, "retry.svc", "dlq.svc"]
    producing_only = ServiceRuntime(SETTINGS, name="svc", migrations=[], produced_topics=[SUBJECT_SEALED])
    assert producing_only.writable_topics == [SUBJECT_SEALED.name]


async def test_a_producer_refuses_a_topic_outside_its_allowed_ones() -> None:
    producer = EventProducer(allowed_topics={"p.allowed.v1"}, bootstrap_servers="127.0.0.1:1")
    producer.check_topic("p.allowed.v1")
    with pytest.raises(UndeclaredTopicError, match=r"refusing to write to 'p\.other\.v1'"):
        await producer.send("p.other.v1", value=b"{}")


def test_every_record_carries_the_structured_content_type_once() -> None:
    content_type = ("content-type", b"application/cloudevents+json")
    assert with_content_type(None) == [content_type]
    assert with_content_type([("cw-error", b"x"), content_type]) == [content_type, ("cw-error", b"x")]


def test_a_service_that_republishes_records_may_write_those_topics_too() -> None:
    replaying = ServiceRuntime(
        SETTINGS,
        name="ops",
        migrations=[],
        consumer_group="ops",
        consumed_topics=[AGENCY_PROFILE],
        produced_topics=[AGENCY_PROFILE],
        republished_topics=[CUSTODY_STATUS_CHANGED, AGENCY_PROFILE],
    )
    assert replaying.writable_topics == [AGENCY_PROFILE.name, CUSTODY_STATUS_CHANGED.name, "retry.ops", "dlq.ops"]
    assert replaying.produced_topics == (AGENCY_PROFILE,), "what it republishes is not what it produces"
