"""Kafka handlers: agencies, custody statuses and seals for the lookup, and contact points delivery disabled."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from aiokafka import ConsumerRecord

from services.subscription import store
from services.subscription.service import SubscriptionService
from shared.events import (
    AgencyProfile,
    CloudEvent,
    ContactPointDisabled,
    CustodyStatusChanged,
    Payload,
    SubjectIdentifier,
    SubjectSealed,
)
from shared.idempotency import claim_event
from shared.kafka import Handler
from shared.topics import AGENCY_PROFILE, CONTACT_POINT_DISABLED, CUSTODY_STATUS_CHANGED, SUBJECT_SEALED
from shared.vocabulary import normalise_identifier

log = logging.getLogger(__name__)

CONSUMER_GROUP = "subscription"
CONSUMED_TOPICS = [AGENCY_PROFILE, CUSTODY_STATUS_CHANGED, SUBJECT_SEALED, CONTACT_POINT_DISABLED]


def _normalised(identifiers: list[SubjectIdentifier]) -> list[SubjectIdentifier]:
    return [SubjectIdentifier(kind=i.kind, value=normalise_identifier(i.value)) for i in identifiers]


def create_handler(service: SubscriptionService) -> Handler:
    async def handle(event: CloudEvent[Payload], _: ConsumerRecord[bytes, bytes]) -> None:
        data = event.data
        now = datetime.now(UTC)
        async with service.pool.acquire() as connection, connection.transaction():
            if not await claim_event(connection, CONSUMER_GROUP, event.id):
                return
            if isinstance(data, AgencyProfile):
                await store.upsert_agency(connection, data)
                await store.save_agency_resources(connection, data)
            elif isinstance(data, CustodyStatusChanged):
                await store.link_identifiers(connection, data.agency_id, data.subject_id, _normalised(data.identifiers))
                await store.record_custody_status(
                    connection,
                    agency_id=data.agency_id,
                    subject_id=data.subject_id,
                    status=data.status,
                    facility=data.facility,
                    effective_at=data.effective_at,
                    now=now,
                    display_name=data.display_name,
                    birth_date=data.date_of_birth,
                )
                await store.record_case_information(connection, event.id, data)
            elif isinstance(data, SubjectSealed):
                await store.link_identifiers(connection, data.agency_id, data.subject_id, _normalised(data.identifiers))
                await store.seal_subject(connection, data.agency_id, data.subject_id, now)
                await store.forget_case(connection, data.agency_id, data.subject_id)
            elif isinstance(data, ContactPointDisabled):
                await service.disable_contact(connection, data.subscription_id, data.channel, data.reason, now)
            else:
                log.warning("ignoring unexpected event type %s", event.type)

    return handle
