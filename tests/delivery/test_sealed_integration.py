"""A sealed subject (custody.subject-sealed.v1): nothing more about it is sent, not even what was already waiting."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time

import asyncpg
import pytest

from services.delivery.domain import SUBJECT_WAS_SEALED
from shared.events import SubjectIdentifier, SubjectSealed
from shared.settings import KafkaSettings
from shared.topics import SUBJECT_SEALED
from shared.vocabulary import CustodyStatus, IdentifierKind
from tests.delivery.harness import eventually, running_delivery

pytestmark = pytest.mark.integration

ALWAYS_QUIET = (time(0, 0), time(23, 59))


async def test_waiting_notices_repeats_and_late_arrivals_of_a_sealed_subject_are_never_sent(
    database_url: str, kafka_settings: KafkaSettings, pool: asyncpg.Pool
) -> None:
    async with running_delivery(
        database_url=database_url, kafka=kafka_settings, pool=pool, repeat_interval_seconds=1.0
    ) as delivery:
        held = delivery.request(status=CustodyStatus.TRANSFERRED, quiet_hours=ALWAYS_QUIET, case="CR-SEAL-1")
        repeating = delivery.request(status=CustodyStatus.RELEASED, case="cr-seal-1")  # the same case, written so
        other = delivery.request(status=CustodyStatus.RELEASED, case="CR-OTHER-7")
        await delivery.publish(held, repeating, other)
        await eventually(
            lambda: asyncio.sleep(0, delivery.sms_for(repeating.notification_id)),
            check=lambda messages: len(messages) >= 2,
            what="the urgent notice repeating",
        )

        sealed = SubjectSealed(
            agency_id="agency-1",
            subject_id="subject-1",
            identifiers=[
                SubjectIdentifier(kind=IdentifierKind.CASE_NUMBER, value="CR-SEAL-1"),
                SubjectIdentifier(kind=IdentifierKind.BOOKING_NUMBER, value="B-1"),
            ],
            sealed_at=datetime.now(UTC),
        )
        await delivery.publish_events(SUBJECT_SEALED.name, [("agency-1/subject-1", sealed)])
        ended = [held.notification_id, repeating.notification_id]
        await eventually(
            lambda: pool.fetch("SELECT stop_reason FROM notifications WHERE notification_id = ANY($1::text[])", ended),
            check=lambda rows: [row["stop_reason"] for row in rows] == [SUBJECT_WAS_SEALED] * 2,
            what="both ended by the seal",
        )
        sent_before = len(delivery.sms_for(repeating.notification_id))

        late = delivery.request(status=CustodyStatus.ESCAPED, case="CR-SEAL-1")  # produced before the seal, say
        await delivery.publish(late)
        await eventually(lambda: delivery.outcome(late.notification_id), check=lambda o: o == "stopped")
        await asyncio.sleep(2.5)  # more than two repeat intervals

        assert delivery.sms_for(held.notification_id) == []
        assert delivery.sms_for(late.notification_id) == []
        assert len(delivery.sms_for(repeating.notification_id)) == sent_before
        assert len(delivery.sms_for(other.notification_id)) >= 2  # another subject's notice repeats as before
        assert await delivery.outcome(other.notification_id) is None
