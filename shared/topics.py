"""Every Kafka topic, its key, its partitions and who writes and reads it (the AsyncAPI document is built from this)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from shared.backoff import Backoff, until_available
from shared.events import (
    AgencyProfile,
    ContactPointDisabled,
    CustodyStatusChanged,
    FeedSilence,
    NoticeAcknowledged,
    NotificationRequested,
    NotificationStatusChanged,
    OpsAlert,
    Payload,
    SubjectSealed,
    SubscriptionState,
)
from shared.settings import KafkaSettings

log = logging.getLogger(__name__)

DEFAULT_PARTITIONS = 6


@dataclass(frozen=True)
class TopicSpec:
    name: str
    payload: type[Payload]
    key: str
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    description: str
    partitions: int = DEFAULT_PARTITIONS
    config: dict[str, str] = field(default_factory=dict)


CUSTODY_STATUS_CHANGED = TopicSpec(
    name="custody.status-changed.v1",
    payload=CustodyStatusChanged,
    key="agency_id/subject_id: one subject's changes stay in order",
    producers=("ingest",),
    consumers=("matching", "subscription"),
    description="A real change of a subject's custody status, after normalisation and change detection.",
)
SUBJECT_SEALED = TopicSpec(
    name="custody.subject-sealed.v1",
    payload=SubjectSealed,
    key="agency_id/subject_id",
    producers=("ingest",),
    consumers=("subscription", "matching", "delivery"),
    description="A subject an agency sealed: nothing about it may be disclosed from then on.",
)
AGENCY_PROFILE = TopicSpec(
    name="agency.profile.v1",
    payload=AgencyProfile,
    key="agency_id",
    producers=("ingest",),
    consumers=("subscription", "delivery", "matching"),
    description="Each agency's public profile and settings (compacted): name, contacts, feed interval, pause.",
    config={"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"},
)
SUBSCRIPTION_STATE = TopicSpec(
    name="subscription.state.v1",
    payload=SubscriptionState,
    key="subscription_id",
    producers=("subscription",),
    consumers=("matching", "delivery"),
    description="The full current state of each subscription (compacted); contact points only encrypted.",
    config={"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"},
)
NOTIFICATION_REQUESTED = TopicSpec(
    name="notification.requested.v1",
    payload=NotificationRequested,
    key="notification_id",
    producers=("matching", "subscription"),
    consumers=("delivery",),
    description="One notice to one contact point of one subscription; the id is deterministic.",
)
NOTIFICATION_STATUS_CHANGED = TopicSpec(
    name="notification.status-changed.v1",
    payload=NotificationStatusChanged,
    key="notification_id",
    producers=("delivery",),
    consumers=("ops",),
    description="Each delivery attempt's progress: created, sending, sent, delivered or a failure.",
)
CONTACT_POINT_DISABLED = TopicSpec(
    name="contact-point.disabled.v1",
    payload=ContactPointDisabled,
    key="subscription_id",
    producers=("delivery",),
    consumers=("subscription",),
    description="A provider said the recipient opted out (21610) or the address bounced hard.",
)
NOTIFICATION_ACKNOWLEDGED = TopicSpec(
    name="notification.acknowledged.v1",
    payload=NoticeAcknowledged,
    key="subscription_id",
    producers=("subscription", "delivery"),
    consumers=("delivery",),
    description="A victim acknowledged an urgent notice (SMS reply or link); its repeats stop.",
)
OPS_ALERT = TopicSpec(
    name="ops.alert.v1",
    payload=OpsAlert,
    key="agency_id",
    producers=("ingest", "delivery", "ops"),
    consumers=("ops",),
    description="Something an operator must look at: a feed gone quiet, a held storm of releases.",
    partitions=1,
)
FEED_SILENCE = TopicSpec(
    name="agency.feed-silence.v1",
    payload=FeedSilence,
    key="agency_id",
    producers=("ingest",),
    consumers=("matching",),
    description="An agency's feed is silent beyond its silence-notice time (subscribers are told), or back again.",
)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    CUSTODY_STATUS_CHANGED,
    SUBJECT_SEALED,
    AGENCY_PROFILE,
    SUBSCRIPTION_STATE,
    NOTIFICATION_REQUESTED,
    NOTIFICATION_STATUS_CHANGED,
    CONTACT_POINT_DISABLED,
    NOTIFICATION_ACKNOWLEDGED,
    OPS_ALERT,
    FEED_SILENCE,
)


def retry_topic(group_id: str) -> str:
    """Failed messages of one consumer group wait here, in time order, for their next try."""
    return f"retry.{group_id}"


def dead_letter_topic(group_id: str) -> str:
    """Messages one consumer group could not process, with the error in their headers, for operators to replay."""
    return f"dlq.{group_id}"


def consumer_group_topics(group_id: str) -> list[TopicSpec]:
    return [
        TopicSpec(
            name=retry_topic(group_id),
            payload=Payload,
            key="as the original message",
            producers=(group_id,),
            consumers=(group_id,),
            description=f"Retries of {group_id}",
            partitions=1,
        ),
        TopicSpec(
            name=dead_letter_topic(group_id),
            payload=Payload,
            key="as the original message",
            producers=(group_id,),
            consumers=("ops",),
            description=f"Dead letters of {group_id}",
            partitions=1,
        ),
    ]


async def ensure_topics(settings: KafkaSettings, specs: list[TopicSpec]) -> None:
    """Create the topics a service needs (idempotent); waits for a broker that is still starting."""
    admin = AIOKafkaAdminClient(**settings.common_kwargs())
    await until_available(admin.start, what="kafka admin start", backoff=Backoff(initial=0.5, maximum=5.0))
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in specs if settings.topic(spec.name) not in existing]
        if not missing:
            return
        new_topics = [
            NewTopic(
                name=settings.topic(spec.name),
                num_partitions=spec.partitions,
                replication_factor=1,
                topic_configs=spec.config,
            )
            for spec in missing
        ]
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(new_topics)
        # The broker answers before all partitions have leaders; wait until metadata shows them.
        for _ in range(50):
            described = await admin.describe_topics([t.name for t in new_topics])
            if all(not t.get("error_code") and t.get("partitions") for t in described):
                return
            await asyncio.sleep(0.1)
    finally:
        await admin.close()
