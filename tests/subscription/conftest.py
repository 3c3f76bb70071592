"""A running subscription service (real Kafka and PostgreSQL) and helpers to drive it like its users do."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import ConsumerRecord

from services.subscription.app import create_app
from services.subscription.domain.verification import verification_notification_id
from services.subscription.settings import SubscriptionSettings
from shared.crypto import ContactCipher
from shared.envelope import CloudEvent, decode, encode
from shared.envelope import new_event as make_event
from shared.events import AgencyProfile, NotificationRequested, Payload, SubscriptionState
from shared.settings import KafkaSettings
from shared.topics import AGENCY_PROFILE, NOTIFICATION_REQUESTED, SUBSCRIPTION_STATE
from shared.twilio import twilio_signature
from shared.vocabulary import Channel
from tests.apps import running_app
from tests.kafkautil import produce_raw, read_topic

PUBLIC_BASE_URL = "https://subscribe.custodywatch.test"
AGENCY_ID = "cook-county-jail"


@dataclass
class Harness:
    client: httpx.AsyncClient
    settings: SubscriptionSettings
    pool: asyncpg.Pool
    kafka: KafkaSettings

    @property
    def cipher(self) -> ContactCipher:
        return ContactCipher(self.settings.contact_encryption_keys, self.settings.blind_index_key)

    async def publish(self, topic: str, key: str, data: Payload, event_id: str | None = None) -> CloudEvent[Any]:
        event = make_event(data, source="/test", event_id=event_id)
        await produce_raw(self.kafka, self.kafka.topic(topic), [(key.encode(), encode(event))])
        return event

    async def add_agency(
        self, agency_id: str = AGENCY_ID, *, active: bool = True, name: str = "Cook County Jail"
    ) -> None:
        profile = AgencyProfile(
            agency_id=agency_id, name=name, timezone="America/Chicago", active=active, updated_at=datetime.now(UTC)
        )
        await self.publish(AGENCY_PROFILE.name, agency_id, profile)
        await self.wait_for(
            "SELECT true FROM agencies WHERE agency_id = $1 AND active = $2", agency_id, active, what="agency"
        )

    async def wait_for(self, query: str, *args: Any, what: str, timeout: float = 30.0) -> Any:
        """Poll the service's own database until the consumer has applied an event."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            value = await self.pool.fetchval(query, *args)
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.1)

    async def subscribe(self, **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "agency_id": AGENCY_ID,
            "identifier": {"kind": "case_number", "value": "CR-2026-0001"},
            "language": "en",
            "timezone": "America/Chicago",
        }
        body.update(fields)
        response = await self.client.post("/v1/subscriptions", json=body)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def notices(
        self, subscription_id: str, channel: str, count: int = 1, timeout: float = 30.0
    ) -> list[NotificationRequested]:
        """Every notification.requested for one contact point, once at least ``count`` have been published."""

        def mine(records: list[ConsumerRecord[bytes, bytes]]) -> list[NotificationRequested]:
            found = []
            for record in records:
                data = decode(record.value).data
                assert isinstance(data, NotificationRequested)
                if data.subscription_id == subscription_id and data.channel.value == channel:
                    found.append(data)
            return found

        records = await read_topic(
            self.kafka,
            self.kafka.topic(NOTIFICATION_REQUESTED.name),
            until=lambda r: len(mine(r)) >= count,
            timeout=timeout,
        )
        return mine(records)

    async def code(self, subscription_id: str, channel: str, issue: int = 1) -> str:
        """The code a victim received: decrypted from the verification notice, as delivery would."""
        notices = await self.notices(subscription_id, channel, issue)
        # Notices are keyed by notification id, so they spread over partitions: pick the issue by its id.
        wanted = verification_notification_id(subscription_id, Channel(channel), issue)
        secret = next(n for n in notices if n.notification_id == wanted).secret_ciphertext
        assert secret is not None
        return self.cipher.decrypt(secret)

    async def states(self, subscription_id: str, min_version: int, timeout: float = 30.0) -> list[SubscriptionState]:
        """The subscription's state events, once version ``min_version`` has been published."""

        def mine(records: list[ConsumerRecord[bytes, bytes]]) -> list[SubscriptionState]:
            found = []
            for record in records:
                if record.key != subscription_id.encode():
                    continue
                data = decode(record.value).data
                assert isinstance(data, SubscriptionState)
                found.append(data)
            return found

        records = await read_topic(
            self.kafka,
            self.kafka.topic(SUBSCRIPTION_STATE.name),
            until=lambda r: any(s.version >= min_version for s in mine(r)),
            timeout=timeout,
        )
        return mine(records)

    async def verify(
        self, created: dict[str, Any], channel: str, code: str, token: str | None = None
    ) -> httpx.Response:
        return await self.client.post(
            f"/v1/subscriptions/{created['subscription_id']}/verify",
            json={"channel": channel, "code": code},
            headers={"Authorization": f"Bearer {token or manage_token(created)}"},
        )

    async def inbound_sms(
        self, sender: str, body: str, sid: str, *, signature: str | None = None, url: str | None = None
    ) -> httpx.Response:
        params = {
            "From": sender,
            "To": self.settings.sms_from_number,
            "Body": body,
            "MessageSid": sid,
            "AccountSid": "AC0000",
        }
        signed_url = url or f"{PUBLIC_BASE_URL}/v1/sms/inbound"
        sign = (
            signature
            if signature is not None
            else twilio_signature(self.settings.twilio_auth_token, signed_url, params)
        )
        return await self.client.post("/v1/sms/inbound", data=params, headers={"X-Twilio-Signature": sign})

    async def manage(self, created: dict[str, Any]) -> dict[str, Any]:
        response = await self.client.get(f"/v1/manage/{manage_token(created)}")
        assert response.status_code == 200, response.text
        view: dict[str, Any] = response.json()
        return view


def manage_token(created: dict[str, Any]) -> str:
    url: str = created["manage_url"]
    assert url.startswith(f"{PUBLIC_BASE_URL}/v1/manage/")
    return url.rsplit("/", 1)[1]


def contact(view: dict[str, Any], channel: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in view["contacts"] if c["channel"] == channel)
    return found


@pytest.fixture
def subscription_settings(database_url: str, kafka_settings: KafkaSettings) -> SubscriptionSettings:
    return SubscriptionSettings(
        environment="test",
        database_url=database_url,
        kafka=kafka_settings,
        public_base_url=PUBLIC_BASE_URL,
        database_pool_max=5,
    )


@asynccontextmanager
async def started(settings: SubscriptionSettings, pool: asyncpg.Pool) -> AsyncIterator[Harness]:
    """The service running in-process, with its agency known."""
    app = create_app(settings)
    async with running_app(app, base_url=PUBLIC_BASE_URL) as client:
        harness = Harness(client=client, settings=settings, pool=pool, kafka=settings.kafka)
        await harness.add_agency()
        yield harness


@pytest.fixture
async def harness(subscription_settings: SubscriptionSettings, pool: asyncpg.Pool) -> AsyncIterator[Harness]:
    async with started(subscription_settings, pool) as harness:
        yield harness
