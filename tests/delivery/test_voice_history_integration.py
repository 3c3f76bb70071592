"""A voice notice's history is told like any channel's: its ``notification.status-changed.v1`` events carry the same
fields, filled the same way, as an SMS notice's (what ops' dashboard and history read), through the same statuses."""

from __future__ import annotations

from functools import partial

import asyncpg
import pytest
from aiokafka import ConsumerRecord

from devservers.sinks.voice import VoiceSinkConfig
from shared.envelope import decode
from shared.events import NotificationStatusChanged
from shared.settings import KafkaSettings
from shared.topics import NOTIFICATION_STATUS_CHANGED
from shared.vocabulary import Channel, CustodyStatus
from tests.delivery.harness import eventually, running_delivery
from tests.kafkautil import read_topic

pytestmark = pytest.mark.integration


def filled(event: NotificationStatusChanged) -> set[str]:
    return {name for name, value in event.model_dump().items() if value is not None}


async def test_voice_status_events_carry_the_same_fields_as_sms_ones(
    database_url: str, kafka_settings: KafkaSettings, pool: asyncpg.Pool
) -> None:
    config = VoiceSinkConfig(ring_seconds=0.01, gather_wait_seconds=0.3)
    async with running_delivery(database_url=database_url, kafka=kafka_settings, pool=pool, voice_config=config) as (
        delivery
    ):
        await delivery.publish_agency()
        # Informational: sent once on either channel, so each ends "delivered" without an acknowledgement.
        sms = delivery.request(channel=Channel.SMS, status=CustodyStatus.TRANSFERRED)
        call = delivery.request(channel=Channel.VOICE, status=CustodyStatus.TRANSFERRED)
        await delivery.publish(sms, call)
        for notification_id in (sms.notification_id, call.notification_id):
            assert await eventually(
                partial(delivery.outcome, notification_id),
                check=lambda outcome: outcome == "delivered",
                timeout=30,
                what=f"notice {notification_id} delivered",
            )

        def both_delivered(records: list[ConsumerRecord[bytes, bytes]]) -> bool:
            events = [decode(record.value).data for record in records]
            return {
                event.notification_id
                for event in events
                if isinstance(event, NotificationStatusChanged) and event.status == "delivered"
            } >= {sms.notification_id, call.notification_id}

        records = await read_topic(
            kafka_settings, kafka_settings.topic(NOTIFICATION_STATUS_CHANGED.name), until=both_delivered
        )
        events = [decode(record.value).data for record in records]
        by_notice = {
            request.notification_id: [
                event
                for event in events
                if isinstance(event, NotificationStatusChanged) and event.notification_id == request.notification_id
            ]
            for request in (sms, call)
        }
        sms_events, call_events = by_notice[sms.notification_id], by_notice[call.notification_id]

        assert [event.status for event in call_events] == [event.status for event in sms_events]
        for sms_event, call_event in zip(sms_events, call_events, strict=True):
            assert filled(call_event) == filled(sms_event), call_event.status
        delivered = call_events[-1]
        assert delivered.channel is Channel.VOICE
        assert delivered.provider == delivery.settings.voice_provider.name
        assert delivered.contact_masked == call.contact_masked
        assert delivered.case == call.custody.identifier if call.custody else False
        history = await delivery.history(call.notification_id)
        assert history["attempts"][0]["detail"].startswith("answered by ")  # the dashboard's "Answered by" column
