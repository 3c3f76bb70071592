"""Assemble what the pages show from the ops database and the latest feed and pipeline snapshots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from services.ops import metrics, store
from services.ops.domain import LATENCY_STAGES, Bar, PendingNotice, chart_columns, display_safe, group_counts
from services.ops.feeds import FeedMonitor
from services.ops.pipeline import PipelineMonitor
from services.ops.schemas import (
    Alert,
    Block,
    ChartColumn,
    CountsRow,
    Dashboard,
    DeadLetterQueue,
    DeadLetterView,
    DeliverySection,
    Failure,
    Feed,
    FeedsSection,
    HistoryEntry,
    Lag,
    LatencyStats,
    NotificationDetail,
    NotificationSummary,
    PipelineSection,
    StormsSection,
)
from services.ops.storms import StormMonitor
from shared.db import Connection
from shared.events import DeliveryStatus
from shared.topics import dead_letter_topic


def notification_summary(row: asyncpg.Record) -> NotificationSummary:
    case = f"{row['case_kind']} {row['case_value']}" if row["case_value"] else None
    return NotificationSummary(
        notification_id=row["notification_id"],
        subscription_id=row["subscription_id"],
        agency_id=row["agency_id"],
        channel=row["channel"],
        provider=row["provider"],
        status=row["status"],
        error_code=row["error_code"],
        attempt=row["attempt"],
        kind=row["kind"],
        urgency=row["urgency"],
        contact_masked=display_safe(row["contact_masked"]),
        case=case,
        custody_event_id=row["custody_event_id"],
        feed_received_at=row["feed_received_at"],
        first_at=row["first_at"],
        last_at=row["last_at"],
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
        Bar(label=f"{row['hour']:%H}:00", delivered=row["delivered"], failed=row["failed"])
        for row in await store.hourly_outcomes(connection, now - timedelta(hours=23))
    ]
    retries = await store.retries_in_flight(connection)
    metrics.RETRIES_IN_FLIGHT.set(retries)
    return DeliverySection(
        last_hour=await counts_rows(connection, now - timedelta(hours=1)),
        last_day=await counts_rows(connection, day_ago),
        latency=latency,
        retries_in_flight=retries,
        hourly=[ChartColumn.model_validate(column.model_dump()) for column in chart_columns(hourly)],
        newest_failures=[
            Failure.model_validate({**row, "case": row["case_value"]})
            for row in await store.newest_failures(connection)
        ],
        newest_notifications=[notification_summary(row) for row in await store.newest_notifications(connection)],
    )


async def feeds_section(connection: Connection, monitor: FeedMonitor, now: datetime) -> FeedsSection:
    feeds = []
    for row in await store.list_feeds(connection):
        last = row["last_feed_at"]
        feeds.append(
            Feed(
                agency_id=row["agency_id"],
                name=row["name"],
                last_feed_at=last,
                quiet_minutes=int((now - last).total_seconds() // 60) if last else None,
                records_accepted=row["records_accepted"],
                records_rejected=row["records_rejected"],
                in_custody=row["in_custody"],
                expected_feed_interval_minutes=row["expected_feed_interval_minutes"],
                notices_paused=row["notices_paused"],
                stale=row["stale"],
                stale_since=row["stale_since"],
                checked_at=row["checked_at"],
            )
        )
    return FeedsSection(feeds=feeds, error=monitor.last_error, checked_at=monitor.last_checked)


async def pipeline_section(connection: Connection, monitor: PipelineMonitor) -> PipelineSection:
    snapshot = monitor.snapshot
    replayed = await store.replayed_offsets(connection)
    queues = []
    for group, size in sorted(snapshot.dlq_sizes.items()):
        topic = dead_letter_topic(group)
        newest = []
        for letter in snapshot.dead_letters.get(group, []):
            replay = replayed.get((letter.topic, letter.partition, letter.offset))
            newest.append(
                DeadLetterView(
                    topic=letter.topic,
                    partition=letter.partition,
                    offset=letter.offset,
                    timestamp=letter.timestamp,
                    original_topic=letter.original_topic,
                    error=letter.error,
                    event_type=letter.event_type,
                    event_id=letter.event_id,
                    replayed_by=replay["username"] if replay else None,
                    replayed_at=replay["at"] if replay else None,
                )
            )
        queues.append(DeadLetterQueue(group=group, topic=topic, size=size, newest=newest))
    return PipelineSection(
        lag=[Lag(group=group, topic=topic, lag=lag) for (group, topic), lag in sorted(snapshot.lag.items())],
        dead_letter_queues=queues,
        error=snapshot.error,
        checked_at=snapshot.checked_at,
    )


def storms_section(monitor: StormMonitor) -> StormsSection:
    snapshot = monitor.snapshot
    return StormsSection(
        holding=snapshot.holding, decided=snapshot.decided, error=snapshot.error, checked_at=snapshot.checked_at
    )


async def build_dashboard(
    pool: asyncpg.Pool, feeds: FeedMonitor, pipeline: PipelineMonitor, storms: StormMonitor
) -> Dashboard:
    now = datetime.now(UTC)
    async with pool.acquire() as connection:
        return Dashboard(
            generated_at=now,
            delivery=await delivery_section(connection, now),
            feeds=await feeds_section(connection, feeds, now),
            pipeline=await pipeline_section(connection, pipeline),
            alerts=[Alert.model_validate(dict(row)) for row in await store.recent_alerts(connection)],
            storms=storms_section(storms),
        )


def pending_summary(notice: PendingNotice) -> NotificationSummary:
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


async def notification_detail(
    connection: Connection, notification_id: str, pending: PendingNotice | None = None
) -> NotificationDetail | None:
    """What ops saw of the notice; or, for one delivery still holds (``pending``), that and the blocks of it."""
    row = await store.get_notification(connection, notification_id)
    if row is not None:
        summary = notification_summary(row)
    elif pending is not None:
        summary = pending_summary(pending)
    else:
        return None
    history = [
        HistoryEntry(
            event_id=entry["event_id"],
            status=entry["status"],
            provider=entry["provider"],
            error_code=entry["error_code"],
            attempt=entry["attempt"],
            at=entry["at"],
            latency_seconds=entry["latency_seconds"],
        )
        for entry in await store.notification_history(connection, notification_id)
    ]
    blocks = [
        Block(
            at=entry["at"],
            username=entry["username"],
            outcome=entry["outcome"],
            reason=entry["detail"].get("reason"),
            message=entry["detail"].get("message"),
        )
        for entry in await store.audit_of(connection, BLOCK_ACTION, notification_id)
    ]
    return NotificationDetail(notification=summary, history=history, blocks=blocks)


BLOCK_ACTION = "block_notice"


FAILED = {
    DeliveryStatus.TEMPORARY_FAILURE.value,
    DeliveryStatus.PERMANENT_FAILURE.value,
    DeliveryStatus.TECHNICAL_FAILURE.value,
}
