"""Delivery honours STOP, opt-outs and cancellations for notices already waiting (subscription.state.v1)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Literal

import asyncpg
import pytest

from services.delivery.domain import (
    STOPPED_BY_SUBSCRIBER,
    SUBSCRIPTION_CANCELLED,
    SUBSCRIPTION_NOT_ACTIVE,
    ContactGate,
)
from services.delivery.store import subscriptions
from shared.db import apply_migrations
from shared.envelope import decode
from shared.events import (
    ContactPointState,
    NotificationKind,
    NotificationRequested,
    NotificationStatusChanged,
    SubjectIdentifier,
    SubscriptionState,
)
from shared.settings import KafkaSettings
from shared.topics import NOTIFICATION_STATUS_CHANGED, SUBSCRIPTION_STATE
from shared.vocabulary import CustodyStatus, IdentifierKind, Language
from tests.delivery.harness import Delivery, eventually, running_delivery
from tests.kafkautil import read_topic

pytestmark = pytest.mark.integration

Status = Literal["pending", "active", "cancelled"]


def state_for(
    request: NotificationRequested,
    *,
    version: int,
    status: Status = "active",
    active: bool = True,
    verified: bool = True,
) -> SubscriptionState:
    """The subscription state of ``request``'s subscription, with its contact on the request's channel."""
    return SubscriptionState(
        subscription_id=request.subscription_id,
        agency_id=request.agency_id,
        identifier=SubjectIdentifier(kind=IdentifierKind.CASE_NUMBER, value="CR-2026-0042"),
        status=status,
        contacts=[
            ContactPointState(
                channel=request.channel,
                ciphertext=request.contact_ciphertext,
                masked=request.contact_masked,
                verified=verified,
                active=active,
            )
        ],
        language=Language.ENGLISH,
        timezone="UTC",
        event_types=list(CustodyStatus),
        version=version,
        updated_at=datetime.now(UTC),
    )


async def publish_state(delivery: Delivery, state: SubscriptionState) -> None:
    await delivery.publish_events(SUBSCRIPTION_STATE.name, [(state.subscription_id, state)])


async def stored_version(delivery: Delivery, subscription_id: str) -> int | None:
    value = await delivery.pool.fetchval(
        "SELECT version FROM subscription_states WHERE subscription_id = $1", subscription_id
    )
    return None if value is None else int(value)


async def wait_for_version(delivery: Delivery, subscription_id: str, version: int) -> None:
    await eventually(
        lambda: stored_version(delivery, subscription_id), check=lambda v: v == version, what=f"state v{version}"
    )


async def sent_count(delivery: Delivery, notification_id: str) -> int:
    return len(delivery.sms_for(notification_id))


async def test_a_repeating_urgent_notice_stops_once_the_subscriber_texts_stop(
    database_url: str, kafka_settings: KafkaSettings, pool: asyncpg.Pool
) -> None:
    async with running_delivery(
        database_url=database_url, kafka=kafka_settings, pool=pool, repeat_interval_seconds=1.0
    ) as delivery:
        urgent = delivery.request(status=CustodyStatus.RELEASED)
        await publish_state(delivery, state_for(urgent, version=1))
        await wait_for_version(delivery, urgent.subscription_id, 1)
        await delivery.publish(urgent)
        await eventually(lambda: sent_count(delivery, urgent.notification_id), check=lambda n: n >= 2, what="two sends")

        await publish_state(delivery, state_for(urgent, version=2, active=False))
        await eventually(
            lambda: delivery.outcome(urgent.notification_id), check=lambda o: o == "stopped", what="repeats stopped"
        )
        await asyncio.sleep(1.0)  # an attempt already at the provider may still complete
        count = await sent_count(delivery, urgent.notification_id)
        await asyncio.sleep(3.0)
        assert await sent_count(delivery, urgent.notification_id) == count

        history = await delivery.history(urgent.notification_id)
        assert history["status"] == "permanent-failure"
        assert history["stop_reason"] == STOPPED_BY_SUBSCRIBER
        assert history["next_attempt_at"] is None
        assert len(history["attempts"]) == count

        records = await read_topic(
            kafka_settings,
            kafka_settings.topic(NOTIFICATION_STATUS_CHANGED.name),
            until=lambda found: any(
                isinstance(change := decode(r.value).data, NotificationStatusChanged)
                and change.error_code == STOPPED_BY_SUBSCRIBER
                for r in found
            ),
        )
        [stopped] = [
            change
            for r in records
            if isinstance(change := decode(r.value).data, NotificationStatusChanged)
            and change.error_code == STOPPED_BY_SUBSCRIBER
        ]
        assert stopped.notification_id == urgent.notification_id
        assert stopped.status == "permanent-failure"


async def test_a_notice_held_for_quiet_hours_is_never_sent_after_the_subscription_is_cancelled(
    database_url: str, kafka_settings: KafkaSettings, pool: asyncpg.Pool
) -> None:
    async with running_delivery(database_url=database_url, kafka=kafka_settings, pool=pool) as delivery:
        now = datetime.now(UTC)
        # Quiet hours that began an hour ago and end in eight seconds, in the subscriber's zone (UTC).
        quiet = ((now - timedelta(hours=1)).time(), (now + timedelta(seconds=8)).time())
        held = delivery.request(status=CustodyStatus.TRANSFERRED, quiet_hours=quiet)
        await publish_state(delivery, state_for(held, version=1))
        await delivery.publish(held)
        stored = await eventually(
            lambda: delivery.history(held.notification_id, allow_missing=True), check=bool, what="the held notice"
        )
        assert stored["attempts"] == []
        assert stored["next_attempt_at"] is not None

        await publish_state(delivery, state_for(held, version=2, status="cancelled"))
        await eventually(
            lambda: delivery.outcome(held.notification_id), check=lambda o: o == "stopped", what="held notice ended"
        )
        # A notice requested while the cancellation was in flight is refused by the dispatcher itself.
        late = delivery.request(
            subscription_id=held.subscription_id, contact=delivery.cipher.decrypt(held.contact_ciphertext)
        )
        await delivery.publish(late)
        await eventually(
            lambda: delivery.outcome(late.notification_id), check=lambda o: o == "stopped", what="late notice ended"
        )

        await asyncio.sleep(max(0.0, (now + timedelta(seconds=9) - datetime.now(UTC)).total_seconds()) + 1.0)
        assert delivery.sms_for(held.notification_id) == []
        assert delivery.sms_for(late.notification_id) == []
        for notice in (held, late):
            history = await delivery.history(notice.notification_id)
            assert history["stop_reason"] == SUBSCRIPTION_CANCELLED
            assert history["status"] == "permanent-failure"
            assert history["attempts"] == []


async def test_an_older_state_arriving_late_does_not_re_enable_a_stopped_contact(
    database_url: str, kafka_settings: KafkaSettings, pool: asyncpg.Pool
) -> None:
    async with running_delivery(database_url=database_url, kafka=kafka_settings, pool=pool) as delivery:
        first = delivery.request(status=CustodyStatus.RELEASED)
        await publish_state(delivery, state_for(first, version=3, active=False))
        await wait_for_version(delivery, first.subscription_id, 3)
        await publish_state(delivery, state_for(first, version=2, active=True))
        await asyncio.sleep(1.5)  # ample time for the consumer to see (and ignore) the older version
        assert await stored_version(delivery, first.subscription_id) == 3

        await delivery.publish(first)
        await eventually(
            lambda: delivery.outcome(first.notification_id), check=lambda o: o == "stopped", what="notice refused"
        )
        assert delivery.sms_for(first.notification_id) == []
        assert (await delivery.history(first.notification_id))["stop_reason"] == STOPPED_BY_SUBSCRIBER


async def test_the_stored_state_keeps_only_the_newest_version(pool: asyncpg.Pool) -> None:
    await apply_migrations(pool, ["shared", "services.delivery"])
    request = NotificationRequested.model_validate(
        {
            "notification_id": "n-1",
            "kind": "verification",
            "subscription_id": "s-older",
            "agency_id": "agency-1",
            "channel": "sms",
            "contact_ciphertext": "ciphertext",
            "contact_masked": "+1 *** *** 0142",
            "language": "en",
            "timezone": "UTC",
            "urgency": "urgent",
            "requested_at": datetime.now(UTC).isoformat(),
        }
    )
    async with pool.acquire() as connection:
        assert await subscriptions.upsert_subscription_state(connection, state_for(request, version=5, active=False))
        assert not await subscriptions.upsert_subscription_state(connection, state_for(request, version=4, active=True))
        assert not await subscriptions.upsert_subscription_state(connection, state_for(request, version=5, active=True))
        gate = await subscriptions.get_subscription_gate(connection, "s-older")
    assert gate is not None
    assert gate.version == 5
    assert gate.contacts[request.channel] == ContactGate(active=False, verified=True, masked="+1 *** *** 0142")


async def test_a_verification_code_still_goes_to_a_pending_subscription(
    database_url: str, kafka_settings: KafkaSettings, pool: asyncpg.Pool
) -> None:
    async with running_delivery(database_url=database_url, kafka=kafka_settings, pool=pool) as delivery:
        code = delivery.request(kind=NotificationKind.VERIFICATION)
        code = code.model_copy(update={"custody": None, "secret_ciphertext": delivery.cipher.encrypt("730514")})
        custody = delivery.request(
            subscription_id=code.subscription_id, contact=delivery.cipher.decrypt(code.contact_ciphertext)
        )
        await publish_state(delivery, state_for(code, version=1, status="pending", verified=False))
        await wait_for_version(delivery, code.subscription_id, 1)
        await delivery.publish(code, custody)

        [sent] = await eventually(
            lambda: asyncio.sleep(0, delivery.sms_for(code.notification_id)),
            check=lambda messages: len(messages) == 1,
            what="the verification code",
        )
        assert "730514" in sent["body"]
        await eventually(
            lambda: delivery.outcome(custody.notification_id), check=lambda o: o == "stopped", what="custody refused"
        )
        assert delivery.sms_for(custody.notification_id) == []
        assert (await delivery.history(custody.notification_id))["stop_reason"] == SUBSCRIPTION_NOT_ACTIVE
