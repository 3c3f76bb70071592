"""Notices in SQL: each one's current state and history, and the counts and latencies of the dashboard."""

from __future__ import annotations

from datetime import datetime

from services.ops.deliveries.domain import Failure, HourlyOutcome, SeenNotification, StatusEvent
from shared.columns import column_list
from shared.db import Connection
from shared.events import NotificationStatusChanged

FAILURES = "('temporary-failure', 'permanent-failure', 'technical-failure')"


async def record_status_change(
    connection: Connection, event_id: str, change: NotificationStatusChanged, latency_seconds: float | None
) -> None:
    """Add the change to the notification's history and move its current state forward (never backwards)."""
    await connection.execute(
        "INSERT INTO notification_events (event_id, notification_id, agency_id, channel, provider, status,"
        " error_code, attempt, at, latency_seconds) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        " ON CONFLICT (event_id) DO NOTHING",
        event_id,
        change.notification_id,
        change.agency_id,
        change.channel.value,
        change.provider,
        change.status.value,
        change.error_code,
        change.attempt,
        change.at,
        latency_seconds,
    )
    case = change.case
    await connection.execute(
        "INSERT INTO notifications AS n (notification_id, subscription_id, agency_id, channel, provider, status,"
        " error_code, attempt, kind, urgency, contact_masked, case_kind, case_value, custody_event_id,"
        " feed_received_at, first_at, last_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16)"
        " ON CONFLICT (notification_id) DO UPDATE SET"
        "  provider = CASE WHEN EXCLUDED.last_at >= n.last_at THEN coalesce(EXCLUDED.provider, n.provider)"
        "             ELSE n.provider END,"
        "  status = CASE WHEN EXCLUDED.last_at >= n.last_at THEN EXCLUDED.status ELSE n.status END,"
        "  error_code = CASE WHEN EXCLUDED.last_at >= n.last_at THEN EXCLUDED.error_code ELSE n.error_code END,"
        "  attempt = greatest(n.attempt, EXCLUDED.attempt),"
        "  kind = coalesce(n.kind, EXCLUDED.kind),"
        "  urgency = coalesce(n.urgency, EXCLUDED.urgency),"
        "  contact_masked = coalesce(n.contact_masked, EXCLUDED.contact_masked),"
        "  case_kind = coalesce(n.case_kind, EXCLUDED.case_kind),"
        "  case_value = coalesce(n.case_value, EXCLUDED.case_value),"
        "  custody_event_id = coalesce(n.custody_event_id, EXCLUDED.custody_event_id),"
        "  feed_received_at = coalesce(n.feed_received_at, EXCLUDED.feed_received_at),"
        "  first_at = least(n.first_at, EXCLUDED.first_at),"
        "  last_at = greatest(n.last_at, EXCLUDED.last_at)",
        change.notification_id,
        change.subscription_id,
        change.agency_id,
        change.channel.value,
        change.provider,
        change.status.value,
        change.error_code,
        change.attempt,
        change.kind.value if change.kind else None,
        change.urgency.value if change.urgency else None,
        change.contact_masked,
        case.kind.value if case else None,
        case.value if case else None,
        change.custody_event_id,
        change.feed_received_at,
        change.at,
    )


async def status_counts(connection: Connection, since: datetime) -> list[tuple[str, str | None, str, int]]:
    rows = await connection.fetch(
        "SELECT channel, provider, status, count(*) AS n FROM notification_events WHERE at >= $1"
        " GROUP BY channel, provider, status",
        since,
    )
    return [(row["channel"], row["provider"], row["status"], int(row["n"])) for row in rows]


async def hourly_outcomes(connection: Connection, since: datetime) -> list[HourlyOutcome]:
    """Delivered and failed status changes per hour since ``since`` (hours with none included)."""
    rows = await connection.fetch(
        "SELECT hours.hour,"  # noqa: S608 - a constant list of statuses
        " count(e.event_id) FILTER (WHERE e.status = 'delivered') AS delivered,"
        f" count(e.event_id) FILTER (WHERE e.status IN {FAILURES}) AS failed"
        " FROM generate_series(date_trunc('hour', $1::timestamptz), date_trunc('hour', now()), interval '1 hour')"
        "   AS hours(hour)"
        " LEFT JOIN notification_events e ON e.at >= hours.hour AND e.at < hours.hour + interval '1 hour'"
        " GROUP BY hours.hour ORDER BY hours.hour",
        since,
    )
    return [HourlyOutcome.model_validate(dict(row)) for row in rows]


async def latency_percentiles(connection: Connection, since: datetime) -> dict[str, dict[str, float | None]]:
    """p50/p90/p99 of feed-to-hand-off (sent) and feed-to-delivered latency since ``since``, in seconds."""
    rows = await connection.fetch(
        "SELECT status, count(*) AS n,"
        " percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_seconds) AS p50,"
        " percentile_cont(0.9) WITHIN GROUP (ORDER BY latency_seconds) AS p90,"
        " percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_seconds) AS p99"
        " FROM notification_events WHERE at >= $1 AND latency_seconds IS NOT NULL"
        " AND status IN ('sent', 'delivered') GROUP BY status",
        since,
    )
    return {row["status"]: {"count": row["n"], "p50": row["p50"], "p90": row["p90"], "p99": row["p99"]} for row in rows}


async def retries_in_flight(connection: Connection) -> int:
    value = await connection.fetchval("SELECT count(*) FROM notifications WHERE status = 'temporary-failure'")
    return int(value or 0)


async def newest_failures(connection: Connection, limit: int = 20) -> list[Failure]:
    rows = await connection.fetch(
        f"SELECT {column_list(Failure)} FROM ("  # noqa: S608 - columns of a model
        ' SELECT e.*, n.case_value AS "case" FROM notification_events e JOIN notifications n USING (notification_id)'
        f" WHERE e.status IN {FAILURES}) AS failures"
        " ORDER BY at DESC LIMIT $1",
        limit,
    )
    return [Failure.model_validate(dict(row)) for row in rows]


async def newest_notifications(connection: Connection, limit: int = 20) -> list[SeenNotification]:
    rows = await connection.fetch(
        f"SELECT {column_list(SeenNotification)} FROM notifications"  # noqa: S608 - columns of a model
        " ORDER BY last_at DESC LIMIT $1",
        limit,
    )
    return [SeenNotification.model_validate(dict(row)) for row in rows]


async def search_notifications(connection: Connection, query: str, limit: int = 100) -> list[SeenNotification]:
    """Notifications whose id, subscription id or case number is ``query`` (case numbers case-insensitively)."""
    rows = await connection.fetch(
        f"SELECT {column_list(SeenNotification)} FROM notifications"  # noqa: S608 - columns of a model
        " WHERE notification_id = $1 OR subscription_id = $1 OR lower(case_value) = lower($1)"
        " ORDER BY last_at DESC LIMIT $2",
        query,
        limit,
    )
    return [SeenNotification.model_validate(dict(row)) for row in rows]


async def get_notification(connection: Connection, notification_id: str) -> SeenNotification | None:
    row = await connection.fetchrow(
        f"SELECT {column_list(SeenNotification)} FROM notifications"  # noqa: S608 - columns of a model
        " WHERE notification_id = $1",
        notification_id,
    )
    return SeenNotification.model_validate(dict(row)) if row else None


async def notification_history(connection: Connection, notification_id: str) -> list[StatusEvent]:
    rows = await connection.fetch(
        f"SELECT {column_list(StatusEvent)} FROM notification_events"  # noqa: S608 - columns of a model
        " WHERE notification_id = $1 ORDER BY at, received_at",
        notification_id,
    )
    return [StatusEvent.model_validate(dict(row)) for row in rows]
