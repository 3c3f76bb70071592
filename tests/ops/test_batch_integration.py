"""Ops applies delivery's status events and alerts a batch at a time (one transaction, a few set-based statements),
ending in the state the per-record path reaches on the same events, against real PostgreSQL (and Kafka for the
fallback of a failed batch)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import ConsumerRecord
from prometheus_client import REGISTRY

from services.ops.consumers import CONSUMER_GROUP, OpsHandler
from shared.db import apply_migrations
from shared.envelope import CloudEvent, encode, new_event
from shared.events import (
    DeliveryStatus,
    NotificationKind,
    NotificationStatusChanged,
    OpsAlert,
    Payload,
    SubjectIdentifier,
)
from shared.kafka.consumer import DecodedRecord
from shared.kafka.records import H_ATTEMPT, header
from shared.settings import KafkaSettings
from shared.topics import NOTIFICATION_STATUS_CHANGED, retry_topic
from shared.vocabulary import Channel, IdentifierKind, Urgency
from tests.kafkautil import produce_raw, read_topic
from tests.ops.conftest import ADMIN, eventually, log_in

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NOTIFICATION_COLUMNS = (
    "subscription_id, agency_id, channel, provider, status, error_code, attempt, kind, urgency, contact_masked,"
    " case_kind, case_value, custody_event_id, feed_received_at, first_at, last_at"
)
EVENT_COLUMNS = "channel, provider, status, error_code, attempt, at, latency_seconds"


@pytest.fixture
async def migrated(pool: asyncpg.Pool) -> asyncpg.Pool:
    await apply_migrations(pool, ["shared", "services.ops"])
    return pool


def change(
    notification_id: str,
    status: DeliveryStatus,
    seconds: float,
    *,
    provider: str | None = "twilio",
    error_code: str | None = None,
    attempt: int = 1,
    contact_masked: str | None = None,
    case: str | None = None,
    kind: NotificationKind | None = None,
    urgency: Urgency | None = None,
    feed_received_at: datetime | None = None,
) -> NotificationStatusChanged:
    return NotificationStatusChanged(
        notification_id=notification_id,
        subscription_id=f"sub-{notification_id}",
        agency_id="county-jail",
        channel=Channel.SMS,
        provider=provider,
        status=status,
        error_code=error_code,
        attempt=attempt,
        at=T0 + timedelta(seconds=seconds),
        kind=kind,
        urgency=urgency,
        contact_masked=contact_masked,
        case=SubjectIdentifier(kind=IdentifierKind.CASE_NUMBER, value=case) if case else None,
        custody_event_id=f"custody-{case}" if case else None,
        feed_received_at=feed_received_at,
    )


def decoded(event_id: str, data: NotificationStatusChanged | OpsAlert, offset: int = 0) -> DecodedRecord:
    event: CloudEvent[Payload] = new_event(data, source="custodywatch/delivery", event_id=event_id)
    value = encode(event)
    record: ConsumerRecord[bytes, bytes] = ConsumerRecord(
        topic=NOTIFICATION_STATUS_CHANGED.name,
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=data.agency_id.encode(),
        value=value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=len(value),
        headers=(),
    )
    return event, record


async def one_by_one(handler: OpsHandler, events: Sequence[DecodedRecord]) -> None:
    for event, record in events:
        await handler(event, record)


def counted(provider: str, status: DeliveryStatus) -> float:
    labels = {"channel": "sms", "provider": provider, "status": status.value}
    return REGISTRY.get_sample_value("cw_ops_notifications_total", labels) or 0.0


async def test_a_batch_applies_nothing_twice(migrated: asyncpg.Pool) -> None:
    handler = OpsHandler(migrated)
    provider = "dup-provider"
    created = decoded("n1:created", change("n1", DeliveryStatus.CREATED, 0, provider=provider))
    sent = decoded("n1:sent", change("n1", DeliveryStatus.SENT, 1, provider=provider))
    delivered = decoded("n1:delivered", change("n1", DeliveryStatus.DELIVERED, 2, provider=provider))
    alert = decoded("alert-1", OpsAlert(kind="storm_held", agency_id="county-jail", message="held", at=T0))
    await handler(*created)  # applied before, one by one
    await handler.handle_batch([created, sent])
    alerts_before = REGISTRY.get_sample_value("cw_ops_alerts_total", {"kind": "storm_held"}) or 0.0

    # Already applied (one by one or in a batch), and twice within the batch itself.
    await handler.handle_batch([created, sent, delivered, delivered, alert, alert, sent])

    history = await migrated.fetch("SELECT event_id FROM notification_events ORDER BY at")
    assert [row["event_id"] for row in history] == ["n1:created", "n1:sent", "n1:delivered"]
    assert await migrated.fetchval("SELECT status FROM notifications WHERE notification_id = 'n1'") == "delivered"
    assert await migrated.fetchval("SELECT count(*) FROM alerts") == 1
    claimed = await migrated.fetchval("SELECT count(*) FROM processed_events WHERE consumer = $1", CONSUMER_GROUP)
    assert claimed == 4
    assert [counted(provider, status) for status in (DeliveryStatus.CREATED, DeliveryStatus.SENT)] == [1.0, 1.0]
    assert counted(provider, DeliveryStatus.DELIVERED) == 1.0
    assert REGISTRY.get_sample_value("cw_ops_alerts_total", {"kind": "storm_held"}) == alerts_before + 1


async def test_a_failed_batch_leaves_nothing_for_the_records_to_find_applied(migrated: asyncpg.Pool) -> None:
    """The runner falls back to the records one by one: the batch's transaction must have applied none of them."""
    handler = OpsHandler(migrated)
    good = decoded("n1:created", change("n1", DeliveryStatus.CREATED, 0))
    poison = decoded("n2:failed", change("n2", DeliveryStatus.TEMPORARY_FAILURE, 0, error_code="bad\x00code"))
    with pytest.raises(asyncpg.DataError):
        await handler.handle_batch([good, poison])
    assert await migrated.fetchval("SELECT count(*) FROM processed_events") == 0
    assert await migrated.fetchval("SELECT count(*) FROM notification_events") == 0

    await handler(*good)
    with pytest.raises(asyncpg.DataError):
        await handler(*poison)
    assert await migrated.fetchval("SELECT array_agg(notification_id) FROM notifications") == ["n1"]


async def test_several_changes_of_one_notice_in_a_batch_end_as_applied_in_order(migrated: asyncpg.Pool) -> None:
    handler = OpsHandler(migrated)
    feed = T0 - timedelta(seconds=30)
    await handler(*decoded("n1:sending", change("n1", DeliveryStatus.SENDING, 3, provider="first")))
    await handler.handle_batch(
        [
            # Older than the stored row: its provider is not taken, its contact is (the first to name one).
            decoded("n1:created", change("n1", DeliveryStatus.CREATED, 0, provider="older", contact_masked="+1•••67")),
            decoded("n1:delivered", change("n1", DeliveryStatus.DELIVERED, 9, provider=None, feed_received_at=feed)),
            decoded("n1:sent", change("n1", DeliveryStatus.SENT, 5, provider="later", feed_received_at=feed)),
            decoded("n1:retry", change("n1", DeliveryStatus.TEMPORARY_FAILURE, 9, provider=None, error_code="30003")),
        ]
    )
    row = await migrated.fetchrow("SELECT * FROM notifications WHERE notification_id = 'n1'")
    assert row is not None
    assert row["status"] == "temporary-failure"  # the last of the two newest, as one by one
    assert row["error_code"] == "30003"
    assert row["provider"] == "first"  # the newer changes name none; "later" came after a newer one
    assert row["contact_masked"] == "+1•••67"
    assert row["feed_received_at"] == feed
    assert (row["first_at"], row["last_at"]) == (T0, T0 + timedelta(seconds=9))
    history = await migrated.fetch("SELECT status, latency_seconds FROM notification_events ORDER BY at, status")
    assert [(r["status"], r["latency_seconds"]) for r in history] == [
        ("created", None),
        ("sending", None),
        ("sent", 35.0),
        ("delivered", 39.0),
        ("temporary-failure", None),
    ]


def random_changes(rng: random.Random, notices: int) -> list[tuple[str, NotificationStatusChanged]]:
    """Several changes per notice, shuffled across notices and out of order within each, with equal times,
    changes naming no provider or detail, and redelivered copies."""
    changes: list[tuple[str, NotificationStatusChanged]] = []
    for notice in range(notices):
        for index in range(rng.randint(1, 6)):
            notification_id = f"n{notice}"
            changes.append(
                (
                    f"{notification_id}:{index}",
                    change(
                        notification_id,
                        rng.choice(list(DeliveryStatus)),
                        rng.randint(0, 5),
                        provider=rng.choice([None, "twilio", "vonage", "telnyx"]),
                        error_code=rng.choice([None, "30003", "30005"]),
                        attempt=rng.randint(1, 3),
                        contact_masked=rng.choice([None, "+1•••67", "+1•••89"]),
                        case=rng.choice([None, "CASE-1", "CASE-2"]),
                        kind=rng.choice([None, NotificationKind.STATUS_CHANGE, NotificationKind.VERIFICATION]),
                        urgency=rng.choice([None, Urgency.URGENT, Urgency.INFORMATIONAL]),
                        feed_received_at=rng.choice([None, T0 - timedelta(seconds=rng.randint(1, 60))]),
                    ),
                )
            )
    rng.shuffle(changes)
    return changes + rng.sample(changes, len(changes) // 5)


def under(prefix: str, changes: Sequence[tuple[str, NotificationStatusChanged]], start: int) -> list[DecodedRecord]:
    """The changes as events of their own notices (``prefix`` before every id), so two paths share a database."""
    return [
        decoded(
            f"{prefix}{event_id}",
            data.model_copy(update={"notification_id": f"{prefix}{data.notification_id}"}),
            offset=start + index,
        )
        for index, (event_id, data) in enumerate(changes)
    ]


async def state_of(pool: asyncpg.Pool, prefix: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The notices and their histories written under ``prefix``, the prefix taken off."""
    notices = await pool.fetch(
        f"SELECT substr(notification_id, $2) AS id, {NOTIFICATION_COLUMNS} FROM notifications"  # noqa: S608
        " WHERE starts_with(notification_id, $1) ORDER BY id",
        prefix,
        len(prefix) + 1,
    )
    events = await pool.fetch(
        f"SELECT substr(event_id, $2) AS id, substr(notification_id, $2) AS notice, {EVENT_COLUMNS}"  # noqa: S608
        " FROM notification_events WHERE starts_with(event_id, $1) ORDER BY id",
        prefix,
        len(prefix) + 1,
    )
    return [dict(row) for row in notices], [dict(row) for row in events]


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_batches_end_as_the_records_one_by_one(migrated: asyncpg.Pool, seed: int) -> None:
    rng = random.Random(seed)
    changes = random_changes(rng, notices=60)
    handler = OpsHandler(migrated)
    await one_by_one(handler, under("one:", changes, 0))
    batched = under("batch:", changes, 0)
    start = 0
    while start < len(batched):  # batches of every size, so changes of a notice meet rows of earlier batches
        size = rng.choice([1, 2, 7, 40, 150])
        await handler.handle_batch(batched[start : start + size])
        start += size

    one, batch = await state_of(migrated, "one:"), await state_of(migrated, "batch:")
    assert len(one[0]) == 60
    assert batch == one


@pytest.fixture
async def logged(database_url: str) -> AsyncIterator[tuple[asyncpg.Pool, list[str]]]:
    """A pool of one connection and every statement it sends to PostgreSQL (transactions and resets included)."""
    statements: list[str] = []

    async def log_statements(connection: asyncpg.Connection) -> None:
        connection.add_query_logger(lambda query: statements.append(query.query))

    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1, init=log_statements)
    assert pool is not None
    await apply_migrations(pool, ["shared", "services.ops"])
    yield pool, statements
    await pool.close()


async def statements_of(statements: list[str], work: Awaitable[None]) -> int:
    before = len(statements)
    await work
    await asyncio.sleep(0.1)  # the logger is called soon after each statement, not during it
    return len(statements) - before


async def test_a_batch_takes_a_handful_of_statements_whatever_its_size(
    logged: tuple[asyncpg.Pool, list[str]],
) -> None:
    pool, statements = logged
    handler = OpsHandler(pool)
    statuses = (DeliveryStatus.CREATED, DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.SENT)
    changes = [
        (f"n{notice}:{index}", change(f"n{notice}", status, index))
        for notice in range(50)
        for index, status in enumerate(statuses)
    ]
    events = {path: under(f"{path}:", changes, 0) for path in ("one", "batch")}
    # The first use of each statement on a connection also looks up its types; from then on only the work counts.
    await one_by_one(handler, events["one"][:1])
    await handler.handle_batch(events["batch"][:1])

    per_record = await statements_of(statements, one_by_one(handler, events["one"][1:]))
    batched = await statements_of(statements, handler.handle_batch(events["batch"][1:]))

    # BEGIN, the claim, the change, COMMIT and the pool's reset: for each event, or once for the batch.
    assert per_record >= 5 * 199
    assert batched <= 5
    one, batch = await state_of(pool, "one:"), await state_of(pool, "batch:")
    assert batch == one


async def test_a_poison_event_goes_alone_to_the_retry_topic(
    ops: httpx.AsyncClient, kafka_settings: KafkaSettings, pool: asyncpg.Pool, unique: str
) -> None:
    await log_in(ops, *ADMIN)  # the app is up and its consumer is reading
    poison = change(f"bad-{unique}", DeliveryStatus.TEMPORARY_FAILURE, 0, error_code="nul\x00byte")
    good = [change(f"n{i}-{unique}", DeliveryStatus.CREATED, i) for i in range(3)]
    fallbacks = REGISTRY.get_sample_value("cw_consumer_batch_fallbacks_total", {"group": CONSUMER_GROUP}) or 0.0
    values = [encode(new_event(data, source="custodywatch/delivery")) for data in [*good[:2], poison, good[2]]]
    await produce_raw(
        kafka_settings, kafka_settings.topic(NOTIFICATION_STATUS_CHANGED.name), [(b"k", v) for v in values]
    )

    async def applied() -> bool:
        found = await pool.fetchval(
            "SELECT count(*) FROM notifications WHERE notification_id = ANY($1::text[])",
            [data.notification_id for data in good],
        )
        return bool(found == len(good))

    await eventually(applied)
    retried = await read_topic(
        kafka_settings, kafka_settings.topic(retry_topic(CONSUMER_GROUP)), until=lambda records: len(records) >= 1
    )
    assert {record.value for record in retried} == {values[2]}  # tried again later, perhaps already more than once
    assert header(retried[0], H_ATTEMPT) == "2"
    assert (
        await pool.fetchval("SELECT count(*) FROM notifications WHERE notification_id = $1", poison.notification_id)
        == 0
    )
    assert (REGISTRY.get_sample_value("cw_consumer_batch_fallbacks_total", {"group": CONSUMER_GROUP}) or 0) > fallbacks
