"""Kafka handlers: agencies, custody statuses and seals for the lookup, and contact points delivery disabled."""

from __future__ import annotations

from aiokafka import ConsumerRecord

from services.subscription.flows.context import Context
from services.subscription.flows.custody import (
    record_agency,
    record_custody_change,
    record_disabled_contact,
    record_seal,
)
from shared.envelope import CloudEvent
from shared.events import AgencyProfile, ContactPointDisabled, CustodyStatusChanged, Payload, SubjectSealed
from shared.idempotency import claim_event
from shared.kafka.consumer import Handler, UnexpectedEventError
from shared.topics import (
    AGENCY_PROFILE,
    CONTACT_POINT_DISABLED,
    CUSTODY_STATUS_CHANGED,
    NOTIFICATION_ACKNOWLEDGED,
    NOTIFICATION_REQUESTED,
    SUBJECT_SEALED,
    SUBSCRIPTION_STATE,
    TopicSpec,
)

CONSUMER_GROUP: str = "subscription"
CONSUMED_TOPICS: tuple[TopicSpec, ...] = (
    AGENCY_PROFILE,
    CUSTODY_STATUS_CHANGED,
    SUBJECT_SEALED,
    CONTACT_POINT_DISABLED,
)
PRODUCED_TOPICS: tuple[TopicSpec, ...] = (SUBSCRIPTION_STATE, NOTIFICATION_REQUESTED, NOTIFICATION_ACKNOWLEDGED)


def create_handler(context: Context) -> Handler:
    async def handle(event: CloudEvent[Payload], record: ConsumerRecord[bytes, bytes]) -> None:
        data = event.data
        now = context.now()
        async with context.pool.acquire() as connection, connection.transaction():
            if not await claim_event(connection, CONSUMER_GROUP, event.id):
                return
            if isinstance(data, AgencyProfile):
                await record_agency(connection, data)
            elif isinstance(data, CustodyStatusChanged):
                await record_custody_change(connection, event.id, data, now)
            elif isinstance(data, SubjectSealed):
                await record_seal(connection, data, now)
            elif isinstance(data, ContactPointDisabled):
                await record_disabled_contact(context, connection, data, now)
            else:
                raise UnexpectedEventError.of(event, record)

    return handle
