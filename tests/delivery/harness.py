"""The delivery service against real Kafka, PostgreSQL and the local SMS/email sinks, for integration tests."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from typing import Any, TypeVar

import asyncpg
import httpx

from devservers.ports import free_port
from devservers.sinks.email import EmailSink
from devservers.sinks.http_server import EmbeddedHttpServer
from devservers.sinks.sms import SmsSink
from devservers.sinks.voice import VoiceSink, VoiceSinkConfig
from services.delivery.app import create_app
from services.delivery.links import AcknowledgementTokens
from services.delivery.settings import DeliverySettings
from shared.crypto import ContactCipher, mask_email, mask_phone
from shared.envelope import encode, new_event
from shared.events import (
    AgencyProfile,
    CustodyFacts,
    NotificationKind,
    NotificationRequested,
    Payload,
    SubjectIdentifier,
)
from shared.settings import KafkaSettings
from shared.topics import AGENCY_PROFILE, NOTIFICATION_REQUESTED
from shared.vocabulary import Channel, CustodyStatus, IdentifierKind, Language, Urgency
from tests.kafkautil import produce_raw

T = TypeVar("T")

TEST_ACCOUNT_SID = "ACtest0000000000000000000000000000"
TEST_AUTH_TOKEN = "test-sink-auth-token-0123456789"
OPERATOR_TOKEN = "test-operator-token-0123456789"
PROVIDER_TIMEOUT = 2.0
"""Well inside the sending lease below: a take-over asks the provider only once the stranded call has timed out."""
FAST = {
    "dispatch_interval_seconds": 0.1,
    "sending_lease_seconds": 5.0,
    "retry_base_seconds": 0.2,
    "retry_max_delay_seconds": 1.0,
    "retry_window_seconds": 600.0,
    "repeat_interval_seconds": 600.0,
    "reconcile_after_seconds": 3.0,
    "reconcile_interval_seconds": 0.5,
    "consumer_retry_attempts": 3,
}


def delivery_settings(
    *,
    database_url: str,
    kafka: KafkaSettings,
    sms_sink: SmsSink,
    email_sink: EmailSink,
    port: int,
    voice_sink: VoiceSink | None = None,
    backup_sms_providers: list[dict[str, Any]] | None = None,
    sms_rate_per_second: float = 200.0,
    **overrides: Any,
) -> DeliverySettings:
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": database_url,
        "database_pool_max": 5,
        "kafka": kafka,
        "http_port": port,
        "public_base_url": f"http://127.0.0.1:{port}",
        "operator_token": OPERATOR_TOKEN,
        "sms_providers": [
            {
                "name": "local",
                "account_sid": sms_sink.account_sid,
                "auth_token": sms_sink.auth_token,
                "from_number": "+15005550006",
                "base_url": sms_sink.url,
                "rate_per_second": sms_rate_per_second,
                "timeout": PROVIDER_TIMEOUT,
            },
            *({"timeout": PROVIDER_TIMEOUT} | provider for provider in backup_sms_providers or []),
        ],
        "smtp": {
            "host": email_sink.host,
            "port": email_sink.smtp_port,
            "unsubscribe_mailto": "stop@example.org",
            "timeout": PROVIDER_TIMEOUT,
        },
    }
    values["voice_provider"] = {
        "name": "voice-local",
        "account_sid": voice_sink.account_sid if voice_sink else TEST_ACCOUNT_SID,
        "auth_token": voice_sink.auth_token if voice_sink else TEST_AUTH_TOKEN,
        "from_number": "+15005550007",
        "base_url": voice_sink.url if voice_sink else "http://127.0.0.1:9",  # no call is placed without a sink
        "rate_per_second": 50.0,
        "timeout": PROVIDER_TIMEOUT,
    }
    return DeliverySettings(**(values | FAST | overrides))


def stored_request(number: int = 0) -> NotificationRequested:
    """Any valid request, for tests of the stored rows: their reader only needs something it can parse."""
    return NotificationRequested(
        notification_id=f"n-{number}",
        kind=NotificationKind.STATUS_CHANGE,
        subscription_id=f"s-{number}",
        agency_id="agency-1",
        channel=Channel.SMS,
        contact_ciphertext="not-read-here",
        contact_masked="+1 *** *** 0000",
        language=Language.ENGLISH,
        timezone="UTC",
        urgency=Urgency.URGENT,
        quiet_hours_start=clock_time(0, 0),
        quiet_hours_end=clock_time(0, 0),
        requested_at=datetime.now(UTC),
    )


def phone_number() -> str:
    """A fresh E.164 number (+1 555 01xx xxxx style), so tests never share recipients."""
    return "+1555" + str(uuid.uuid4().int)[:7]


@dataclass
class Delivery:
    settings: DeliverySettings
    kafka: KafkaSettings
    pool: asyncpg.Pool
    sms_sink: SmsSink
    email_sink: EmailSink
    http: httpx.AsyncClient
    voice_sink: VoiceSink
    cipher: ContactCipher = field(init=False)
    tokens: AcknowledgementTokens = field(init=False)

    def __post_init__(self) -> None:
        self.cipher = ContactCipher(self.settings.contact_encryption_keys, self.settings.blind_index_key)
        self.tokens = AcknowledgementTokens(self.settings.token_secret)

    @property
    def url(self) -> str:
        return self.settings.public_base_url

    def operator_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {OPERATOR_TOKEN}"}

    def request(
        self,
        *,
        channel: Channel = Channel.SMS,
        contact: str | None = None,
        language: Language = Language.ENGLISH,
        status: CustodyStatus = CustodyStatus.TRANSFERRED,
        urgency: Urgency | None = None,
        kind: NotificationKind = NotificationKind.STATUS_CHANGE,
        agency_id: str = "agency-1",
        subscription_id: str | None = None,
        timezone: str = "UTC",
        quiet_hours: tuple[clock_time, clock_time] = (clock_time(0, 0), clock_time(0, 0)),
        case: str = "CR-2026-0042",
    ) -> NotificationRequested:
        if contact is None:
            contact = phone_number() if channel is not Channel.EMAIL else f"victim-{uuid.uuid4().hex[:8]}@example.org"
        masked = mask_email(contact) if channel is Channel.EMAIL else mask_phone(contact)
        now = datetime.now(UTC)
        return NotificationRequested(
            notification_id=f"n-{uuid.uuid4().hex[:16]}",
            kind=kind,
            subscription_id=subscription_id or f"s-{uuid.uuid4().hex[:12]}",
            agency_id=agency_id,
            channel=channel,
            contact_ciphertext=self.cipher.encrypt(contact),
            contact_masked=masked,
            language=language,
            timezone=timezone,
            urgency=urgency
            or (Urgency.URGENT if status in {CustodyStatus.RELEASED, CustodyStatus.ESCAPED} else Urgency.INFORMATIONAL),
            quiet_hours_start=quiet_hours[0],
            quiet_hours_end=quiet_hours[1],
            custody=CustodyFacts(
                custody_event_id=f"ce-{uuid.uuid4().hex[:12]}",
                identifier=SubjectIdentifier(kind=IdentifierKind.CASE_NUMBER, value=case),
                display_name="John Example",
                facility="County Jail Central",
                status=status,
                previous_status=CustodyStatus.IN_CUSTODY,
                transfer_destination="State Prison North" if status is CustodyStatus.TRANSFERRED else None,
                effective_at=now,
                feed_received_at=now,
            ),
            manage_url_ciphertext=self.cipher.encrypt("https://custodywatch.example/v1/manage/tok123"),
            unsubscribe_url_ciphertext=self.cipher.encrypt("https://custodywatch.example/v1/unsubscribe/tok456")
            if channel is Channel.EMAIL
            else None,
            requested_at=now,
        )

    async def publish(self, *requests: NotificationRequested) -> None:
        await self.publish_events(NOTIFICATION_REQUESTED.name, [(r.notification_id, r) for r in requests])

    async def publish_events(self, topic: str, items: list[tuple[str, Payload]]) -> None:
        messages: list[tuple[bytes | None, bytes | None]] = [
            (key.encode(), encode(new_event(data, source="tests"))) for key, data in items
        ]
        await produce_raw(self.kafka, self.kafka.topic(topic), messages)

    async def publish_agency(self, agency_id: str = "agency-1", *, paused: bool = False) -> AgencyProfile:
        profile = AgencyProfile(
            agency_id=agency_id,
            name="Example County Sheriff",
            timezone="America/Chicago",
            contact_phone="+15125550100",
            victim_services_phone="+15125550199",
            victim_services_url="https://victims.example.gov",
            notices_paused=paused,
            updated_at=datetime.now(UTC),
        )
        await self.publish_events(AGENCY_PROFILE.name, [(agency_id, profile)])
        return profile

    async def history(self, notification_id: str, *, allow_missing: bool = False) -> dict[str, Any]:
        """The operator view of one notification; ``{}`` when it is not stored yet and ``allow_missing``."""
        response = await self.http.get(f"/v1/notifications/{notification_id}", headers=self.operator_headers())
        if allow_missing and response.status_code == 404:
            return {}
        assert response.status_code == 200, response.text
        document: dict[str, Any] = response.json()
        return document

    async def outcome(self, notification_id: str) -> str | None:
        value = await self.pool.fetchval(
            "SELECT outcome FROM notifications WHERE notification_id = $1", notification_id
        )
        return None if value is None else str(value)

    def calls_for(self, notification_id: str) -> list[dict[str, Any]]:
        """Calls the voice sink placed for one notification (any attempt)."""
        return [
            call for call in self.voice_sink.calls() if (call["reference"] or "").startswith(f"{notification_id}.a")
        ]

    def sms_for(self, notification_id: str) -> list[dict[str, Any]]:
        """Messages the SMS sink stored for one notification (any attempt)."""
        return [
            message
            for message in self.sms_sink.messages()
            if (message["reference"] or "").startswith(f"{notification_id}.a")
        ]


class MovableClock:
    """Real time plus an offset that a test moves forward (so repeats come due without waiting hours)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **amount: float) -> None:
        self.offset += timedelta(**amount)


async def eventually(
    probe: Callable[[], Awaitable[T]], *, check: Callable[[T], bool], timeout: float = 20.0, what: str = ""
) -> T:
    """Poll ``probe`` until ``check`` holds; fail with the last value after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if check(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or 'condition'}; last value: {value!r}")
        await asyncio.sleep(0.1)


@asynccontextmanager
async def running_delivery(
    *,
    database_url: str,
    kafka: KafkaSettings,
    pool: asyncpg.Pool,
    sms_config: Any = None,
    voice_config: VoiceSinkConfig | None = None,
    clock: Callable[[], datetime] | None = None,
    **overrides: Any,
) -> AsyncIterator[Delivery]:
    """Sinks on free ports, and the delivery service serving HTTP on a real port (the sinks call it back)."""
    sms_sink = SmsSink(account_sid=TEST_ACCOUNT_SID, auth_token=TEST_AUTH_TOKEN, config=sms_config)
    email_sink = EmailSink()
    voice_sink = VoiceSink(account_sid=TEST_ACCOUNT_SID, auth_token=TEST_AUTH_TOKEN, config=voice_config)
    port = free_port()
    async with sms_sink, email_sink, voice_sink:
        settings = delivery_settings(
            database_url=database_url,
            kafka=kafka,
            sms_sink=sms_sink,
            email_sink=email_sink,
            voice_sink=voice_sink,
            port=port,
            **overrides,
        )
        server = EmbeddedHttpServer(
            create_app(settings, clock=clock) if clock else create_app(settings), host="127.0.0.1", port=port
        )
        server.ready_timeout = 60.0
        await server.start()
        try:
            async with httpx.AsyncClient(base_url=settings.public_base_url, timeout=10) as http:
                await eventually(
                    lambda: http.get("/readyz"), check=lambda r: r.status_code == 200, timeout=30, what="ready"
                )
                yield Delivery(settings, kafka, pool, sms_sink, email_sink, http, voice_sink)
        finally:
            await server.stop()


def most_in_any_window(moments: list[float], window: float) -> int:
    """The most of ``moments`` (seconds) that fall within any ``window`` seconds: what a rate limit bounds."""
    ordered = sorted(moments)
    most, first = 0, 0
    for last, moment in enumerate(ordered):
        while moment - ordered[first] > window:
            first += 1
        most = max(most, last - first + 1)
    return most
