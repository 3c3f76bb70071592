"""Notices as the dashboard shows them: the delivery section, search, one notice's history (with what delivery
still knows of it: its calls and acknowledgement), and the gauge of retries in flight."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

import asyncpg

from services.ops import metrics
from services.ops.audit.store import audit_of
from services.ops.clients.base import UpstreamError
from services.ops.clients.delivery import DeliveryClient
from services.ops.deliveries import store
from services.ops.deliveries.domain import (
    BLOCK_ACTION,
    LATENCY_STAGES,
    Bar,
    DeliveryAttempt,
    DeliveryNotice,
    SeenNotification,
    StatusEvent,
    acknowledgement,
    answered_by,
    call_status,
    chart_columns,
    display_safe,
    group_counts,
)
from services.ops.schemas import (
    Block,
    CountsRow,
    DeliverySection,
    HistoryEntry,
    LatencyStats,
    NotificationDetail,
    NotificationSummary,
)
from shared.db import Connection

log = logging.getLogger(__name__)


def notification_summary(row: SeenNotification) -> NotificationSummary:
    return NotificationSummary.model_validate(
        row.model_dump(exclude={"case_kind", "case_value"})
        | {"case": row.case_label, "contact_masked": display_safe(row.contact_masked)}
    )


def pending_summary(notice: DeliveryNotice) -> NotificationSummary:
    """A notice delivery holds unsent, summarised like those ops has seen handed off."""
    return NotificationSummary(
        notification_id=notice.notification_id,
        subscription_id=notice.subscription_id,
        agency_id=notice.agency_id,
        channel=notice.channel,
        provider=None,
        status="pending",
        error_code=None,
        attempt=notice.attempt_count,
        kind=notice.kind,
        urgency=notice.urgency,
        contact_masked=None,
        case=notice.case_label,
        custody_event_id=notice.custody_event_id,
        feed_received_at=None,
        first_at=notice.created_at,
        last_at=notice.updated_at,
    )


async def counts_rows(connection: Connection, since: datetime) -> list[CountsRow]:
    return [
        CountsRow(
            channel=line.channel,
            provider=line.provider,
            requested=line.requested,
            sent=line.sent,
            delivered=line.delivered,
            failed=line.failed,
            by_status=line.counts,
        )
        for line in group_counts(await store.status_counts(connection, since))
    ]


async def delivery_section(connection: Connection, now: datetime) -> DeliverySection:
    day_ago = now - timedelta(days=1)
    percentiles = await store.latency_percentiles(connection, day_ago)
    latency = []
    for status, stage in LATENCY_STAGES.items():
        stats = percentiles.get(status.value, {})
        latency.append(
            LatencyStats(
                stage=stage,
                count=int(stats.get("count") or 0),
                p50_seconds=stats.get("p50"),
                p90_seconds=stats.get("p90"),
                p99_seconds=stats.get("p99"),
            )
        )
    hourly = [
        Bar(label=f"{hour.hour:%H}:00", delivered=hour.delivered, failed=hour.failed)
        for hour in await store.hourly_outcomes(connection, now - timedelta(hours=23))
    ]
    retries = await store.retries_in_flight(connection)
    metrics.RETRIES_IN_FLIGHT.set(retries)
    return DeliverySection(
        last_hour=await counts_rows(connection, now - timedelta(hours=1)),
        last_day=await counts_rows(connection, day_ago),
        latency=latency,
        retries_in_flight=retries,
        hourly=chart_columns(hourly),
        newest_failures=await store.newest_failures(connection),
        newest_notifications=[notification_summary(row) for row in await store.newest_notifications(connection)],
    )


async def search_notices(pool: asyncpg.Pool, delivery: DeliveryClient, query: str) -> list[NotificationSummary]:
    """Notices ops saw handed off, then those of the case delivery still holds (so they can be blocked)."""
    async with pool.acquire() as connection:
        seen = [notification_summary(row) for row in await store.search_notifications(connection, query)]
    try:
        pending = await delivery.pending_notices(query)
    except UpstreamError as error:
        log.warning("pending notices unavailable: %s", error)
        pending = []
    known = {summary.notification_id for summary in seen}
    return seen + [pending_summary(notice) for notice in pending if notice.notification_id not in known]


def history_entries(channel: str, events: list[StatusEvent], attempts: list[DeliveryAttempt]) -> list[HistoryEntry]:
    """The history ops saw; each attempt's last line also says who answered its call (from delivery's records)."""
    by_number = {attempt.number: attempt for attempt in attempts}
    last_of_attempt = {event.attempt: index for index, event in enumerate(events)}
    entries = []
    for index, event in enumerate(events):
        attempt = by_number.get(event.attempt)
        entries.append(
            HistoryEntry.model_validate(
                event.model_dump()
                | {
                    "call_status": call_status(channel, event.status, event.error_code),
                    "answered_by": answered_by(attempt)
                    if attempt and last_of_attempt[event.attempt] == index
                    else None,
                }
            )
        )
    return entries


async def find_notification(pool: asyncpg.Pool, delivery: DeliveryClient, notification_id: str) -> NotificationDetail:
    """What ops saw of a notice and the blocks of it, with what delivery knows: a notice it still holds unsent,
    its calls' answers, its acknowledgement. LookupError when neither knows the notice."""
    at_delivery: DeliveryNotice | None = None
    delivery_error = None
    try:
        at_delivery = await delivery.notice(notification_id)
    except UpstreamError as error:
        if error.status != 404:
            delivery_error = str(error)
    async with pool.acquire() as connection:
        row = await store.get_notification(connection, notification_id)
        if row is not None:
            summary = notification_summary(row)
        elif at_delivery is not None:
            summary = pending_summary(at_delivery)
        else:
            raise LookupError(notification_id)
        events = await store.notification_history(connection, notification_id)
        blocks = await audit_of(connection, BLOCK_ACTION, notification_id)
    return NotificationDetail(
        notification=summary,
        history=history_entries(summary.channel, events, at_delivery.attempts if at_delivery else []),
        blocks=[
            Block(
                at=entry.at,
                username=entry.username,
                outcome=entry.outcome,
                reason=entry.detail.get("reason"),
                message=entry.detail.get("message"),
            )
            for entry in blocks
        ],
        acknowledged=acknowledgement(at_delivery) if at_delivery else None,
        delivery_error=delivery_error,
    )


async def refresh_retries_gauge(pool: asyncpg.Pool, interval_seconds: float) -> None:
    """Keep the retries-in-flight gauge current even when nobody has the dashboard open."""
    while True:
        async with pool.acquire() as connection:
            metrics.RETRIES_IN_FLIGHT.set(await store.retries_in_flight(connection))
        await asyncio.sleep(interval_seconds)
