"""The whole flow with a test phone and email, then every message on every topic, every log line and every
database row is searched for the contact details in clear text."""

from __future__ import annotations

import asyncio
import io
import logging
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.subscription.settings import SubscriptionSettings
from shared.events import ContactPointDisabled, CustodyStatusChanged, SubjectIdentifier
from shared.logging import configure_logging
from shared.settings import KafkaSettings
from shared.topics import CONTACT_POINT_DISABLED, CUSTODY_STATUS_CHANGED
from shared.vocabulary import Channel, CustodyStatus, IdentifierKind
from tests.subscription.conftest import Harness, manage_token, started

pytestmark = pytest.mark.integration

PHONE = "+13125550199"
OTHER_PHONE = "+12025550143"
EMAIL_TYPED = "Jane.Victim+cw@Example.ORG"
EMAIL = "Jane.Victim+cw@example.org"


def forbidden_forms() -> list[str]:
    forms = [
        PHONE,
        PHONE.removeprefix("+"),
        PHONE.removeprefix("+1"),
        "(312) 555-0199",
        "312-555-0199",
        "312.555.0199",
        "312 555 0199",
        OTHER_PHONE,
        OTHER_PHONE.removeprefix("+1"),
        EMAIL,
        EMAIL.lower(),
        EMAIL_TYPED,
        "jane.victim",
    ]
    return [form.lower() for form in forms]


def leaks(text: str) -> list[str]:
    lowered = text.lower()
    return [form for form in forbidden_forms() if form in lowered]


class RawRecords(logging.Handler):
    """Sees each record before the redaction filter of the JSON handler rewrites it: a leak the filter would
    hide still fails the test."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.getMessage()} {record.__dict__!r}")


async def all_messages(kafka: KafkaSettings) -> dict[str, list[bytes]]:
    """Every record (keys, values, headers) of every topic of this test's prefix, aborted ones included."""
    admin = AIOKafkaAdminClient(**kafka.common_kwargs())
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if t.startswith(kafka.topic_prefix)]
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(**kafka.consumer_kwargs(f"privacy-{uuid.uuid4().hex[:8]}", read_committed=False))
    found: dict[str, list[bytes]] = {topic: [] for topic in topics}
    await consumer.start()
    try:
        partitions = [
            TopicPartition(description["topic"], partition["partition"])
            for description in described
            for partition in description["partitions"]
        ]
        assert len(partitions) >= len(topics)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        remaining = {tp for tp, end in ends.items() if end > 0}
        deadline = asyncio.get_running_loop().time() + 30
        while remaining:
            assert asyncio.get_running_loop().time() < deadline, f"could not read {remaining}"
            batch = await consumer.getmany(timeout_ms=200)
            for tp, records in batch.items():
                for record in records:
                    parts = [record.key or b"", record.value or b""]
                    parts += [name.encode() + b"=" + value for name, value in record.headers or ()]
                    found[tp.topic].append(b" ".join(parts))
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return found


async def run_whole_flow(harness: Harness) -> None:
    client = harness.client
    first = await harness.subscribe(sms="(312) 555-0199", email=EMAIL_TYPED)
    second = await harness.subscribe(sms=OTHER_PHONE, language="es")
    subscription_id = first["subscription_id"]
    code = await harness.code(subscription_id, "sms")
    assert (await harness.verify(first, "sms", "000000" if code != "000000" else "111111")).status_code == 422
    assert (await harness.verify(first, "sms", code)).status_code == 200
    assert (
        await harness.verify(second, "sms", await harness.code(second["subscription_id"], "sms"))
    ).status_code == 200
    email_notice = (await harness.notices(subscription_id, "email"))[0]
    assert email_notice.verify_url_ciphertext is not None
    link = harness.cipher.decrypt(email_notice.verify_url_ciphertext).removeprefix(harness.settings.public_base_url)
    assert (await client.get(link)).status_code == 200
    # Bad input of every kind, with the real contact details in it.
    bad = await client.post(
        "/v1/subscriptions",
        json={
            "agency_id": "nowhere",
            "identifier": {"kind": "case_number", "value": "X"},
            "sms": PHONE,
            "timezone": "UTC",
        },
    )
    assert bad.status_code == 404
    landline = await client.post(
        "/v1/subscriptions",
        json={
            "agency_id": "cook-county-jail",
            "identifier": {"kind": "case_number", "value": "X"},
            "sms": "+44 20 7946 0018",
            "email": EMAIL,
            "timezone": "UTC",
        },
    )
    assert landline.status_code == 422
    token = manage_token(first)
    assert (await client.patch(f"/v1/manage/{token}", json={"language": "es"})).status_code == 200
    assert (await client.get(f"/v1/manage/{token}")).status_code == 200
    for sid, body in (("SM1", "HELP"), ("SM2", "ok"), ("SM3", "STOP"), ("SM4", "START"), ("SM5", "hello?")):
        assert (await harness.inbound_sms(PHONE, body, sid)).status_code == 200
    assert (await harness.inbound_sms(PHONE, "STOP", "SM6", signature="forged")).status_code == 403
    await harness.publish(
        CUSTODY_STATUS_CHANGED.name,
        "cook-county-jail/s-1",
        CustodyStatusChanged(
            agency_id="cook-county-jail",
            subject_id="s-1",
            identifiers=[SubjectIdentifier(kind=IdentifierKind.CASE_NUMBER, value="CR-2026-0001")],
            status=CustodyStatus.IN_CUSTODY,
            effective_at=datetime.now(UTC),
            agency_record_id="r-1",
            feed_batch_id="b-1",
            received_at=datetime.now(UTC),
        ),
    )
    await harness.publish(
        CONTACT_POINT_DISABLED.name,
        second["subscription_id"],
        ContactPointDisabled(
            subscription_id=second["subscription_id"], channel=Channel.SMS, reason="opted_out", at=datetime.now(UTC)
        ),
    )
    await harness.wait_for(
        "SELECT true FROM contact_points WHERE subscription_id = $1 AND NOT active",
        second["subscription_id"],
        what="disable",
    )
    await harness.wait_for("SELECT true FROM custody_subjects", what="custody status")
    status = await client.get("/v1/agencies/cook-county-jail/cases/case_number/CR-2026-0001/status")
    assert status.status_code == 200
    unsubscribe_ciphertext = (await harness.states(subscription_id, 1))[0].unsubscribe_url_ciphertext
    assert unsubscribe_ciphertext is not None
    unsubscribe = harness.cipher.decrypt(unsubscribe_ciphertext).removeprefix(harness.settings.public_base_url)
    assert (await client.post(unsubscribe, data={"List-Unsubscribe": "One-Click"})).status_code == 200
    assert (await client.delete(f"/v1/manage/{token}")).status_code == 200
    await harness.wait_for("SELECT count(*) = 0 FROM outbox WHERE published_at IS NULL", what="outbox drained")


async def test_no_clear_text_contact_in_kafka_logs_or_database(
    subscription_settings: SubscriptionSettings, pool: asyncpg.Pool, kafka_settings: KafkaSettings
) -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    stream = io.StringIO()
    raw = RawRecords()
    configure_logging("subscription", "DEBUG", stream=stream)
    root.handlers.insert(0, raw)
    try:
        async with started(subscription_settings, pool) as harness:
            await run_whole_flow(harness)
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)

    messages = await all_messages(kafka_settings)
    expected_topics = {"subscription.state.v1", "notification.requested.v1", "notification.acknowledged.v1"}
    assert expected_topics <= {t.removeprefix(kafka_settings.topic_prefix) for t, m in messages.items() if m}
    total = 0
    for topic, records in messages.items():
        for record in records:
            total += 1
            assert not leaks(record.decode(errors="replace")), f"clear-text contact on {topic}"
    assert total >= 15

    log_output = stream.getvalue()
    assert "subscription created" in log_output
    assert "inbound SMS handled" in log_output
    assert not leaks(log_output), "clear-text contact in the JSON log"
    assert raw.lines
    for line in raw.lines:
        assert not leaks(line), f"clear-text contact in a log record: {line[:200]}"

    tables = await pool.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    for table in (row["tablename"] for row in tables):
        rows = await pool.fetch(f'SELECT row_to_json(t)::text AS doc FROM "{table}" t')  # noqa: S608 - catalog names
        for row in rows:
            assert not leaks(row["doc"]), f"clear-text contact in table {table}"
    outbox = await pool.fetch("SELECT value FROM outbox")
    assert outbox
    for row in outbox:
        assert not leaks(bytes(row["value"]).decode()), "clear-text contact in the outbox"
