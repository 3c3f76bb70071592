"""Notices in SQL: each one's current state and history, and the counts and latencies of the dashboard."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from services.ops.deliveries.domain import Failure, HourlyOutcome, SeenNotification, StatusEvent
from shared.columns import column_list
from shared.db import Connection
from shared.events import NotificationStatusChanged

FAILURES = "('temporary-failure', 'permanent-failure', 'technical-failure')"


BATCH_OF_CHANGES = (
    "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],"
    " $8::text[], $9::integer[], $10::timestamptz[], $11::double precision[], $12::text[], $13::text[], $14::text[],"
    " $15::text[], $16::text[], $17::text[], $18::timestamptz[]) WITH ORDINALITY AS c(event_id, notification_id,"
    " subscription_id, agency_id, channel, provider, status, error_code, attempt, at, latency_seconds, kind, urgency,"
    " contact_masked, case_kind, case_value, custody_event_id, feed_received_at, position)"
)
"""A batch of changes as rows (one array parameter per column, see :func:`_columns`), ``position`` their order."""

FOLDED_PER_NOTIFICATION = (
    "newest AS (SELECT *, at >= coalesce(max(at) OVER (PARTITION BY notification_id ORDER BY position"
    "   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), '-infinity') AS newest_yet FROM c),"
    " folded AS (SELECT notification_id,"
    "  (array_agg(subscription_id ORDER BY position))[1] AS subscription_id,"
    "  (array_agg(agency_id ORDER BY position))[1] AS agency_id,"
    "  (array_agg(channel ORDER BY position))[1] AS channel,"
    "  (array_agg(provider ORDER BY position DESC) FILTER (WHERE newest_yet AND provider IS NOT NULL))[1] AS provider,"
    "  (array_agg(at ORDER BY position DESC) FILTER (WHERE newest_yet AND provider IS NOT NULL))[1] AS provider_at,"
    "  (array_agg(status ORDER BY at DESC, position DESC))[1] AS status,"
    "  (array_agg(error_code ORDER BY at DESC, position DESC))[1] AS error_code,"
    "  max(attempt) AS attempt,"
    "  (array_agg(kind ORDER BY position) FILTER (WHERE kind IS NOT NULL))[1] AS kind,"
    "  (array_agg(urgency ORDER BY position) FILTER (WHERE urgency IS NOT NULL))[1] AS urgency,"
    "  (array_agg(contact_masked ORDER BY position) FILTER (WHERE contact_masked IS NOT NULL))[1] AS contact_masked,"
    "  (array_agg(case_kind ORDER BY position) FILTER (WHERE case_kind IS NOT NULL))[1] AS case_kind,"
    "  (array_agg(case_value ORDER BY position) FILTER (WHERE case_value IS NOT NULL))[1] AS case_value,"
    "  (array_agg(custody_event_id ORDER BY position) FILTER (WHERE custody_event_id IS NOT NULL))[1]"
    "    AS custody_event_id,"
    "  (array_agg(feed_received_at ORDER BY position) FILTER (WHERE feed_received_at IS NOT NULL))[1]"
    "    AS feed_received_at,"
    "  min(at) AS first_at, max(at) AS last_at"
    " FROM newest GROUP BY notification_id)"
)
"""Each notification's changes in the batch folded into the row that applying them one by one would leave, were
there no row before: the first change's identity, the newest change's status and error code (the last one among
equal times), the first of each detail named, and the provider of the last change that named one and was the
newest yet when it came. ``provider_at`` is when that change was: a row newer still keeps its own provider."""


async def record_status_changes(
    connection: Connection, changes: Sequence[tuple[str, NotificationStatusChanged, float | None]]
) -> None:
    """Add each (event id, change, latency) to its notification's history and move its current state forward
    (never backwards), in one statement, leaving the state that applying them one by one in batch order would.
    Notifications are written in id order, so two batches never wait for each other's rows in a cycle."""
    if not changes:
        return
    columns = _columns(changes)
    await connection.execute(
        f"WITH c AS ({BATCH_OF_CHANGES}),"  # noqa: S608 - constants
        " history AS (INSERT INTO notification_events (event_id, notification_id, agency_id, channel, provider,"
        "  status, error_code, attempt, at, latency_seconds)"
        "  SELECT event_id, notification_id, agency_id, channel, provider, status, error_code, attempt, at,"
        "  latency_seconds FROM c ON CONFLICT (event_id) DO NOTHING),"
        f" {FOLDED_PER_NOTIFICATION}"
        " INSERT INTO notifications AS n (notification_id, subscription_id, agency_id, channel, provider, status,"
        " error_code, attempt, kind, urgency, contact_masked, case_kind, case_value, custody_event_id,"
        " feed_received_at, first_at, last_at)"
        " SELECT notification_id, subscription_id, agency_id, channel, provider, status, error_code, attempt, kind,"
        " urgency, contact_masked, case_kind, case_value, custody_event_id, feed_received_at, first_at, last_at"
        " FROM folded ORDER BY notification_id"
        " ON CONFLICT (notification_id) DO UPDATE SET"
        # One map of the batch, looked up by each row it updates (a subquery would scan the batch for each).
        "  provider = CASE WHEN ((SELECT jsonb_object_agg(notification_id, provider_at) FROM folded)"
        "             ->> n.notification_id)::timestamptz >= n.last_at THEN EXCLUDED.provider ELSE n.provider END,"
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
        *columns,
    )


def _columns(changes: Sequence[tuple[str, NotificationStatusChanged, float | None]]) -> list[list[Any]]:
    """The parameters of :data:`BATCH_OF_CHANGES`: one list per column, the changes in batch order."""
    rows = [
        (
            event_id,
            change.notification_id,
            change.subscription_id,
            change.agency_id,
            change.channel.value,
            change.provider,
            change.status.value,
            change.error_code,
            change.attempt,
            change.at,
            latency,
            change.kind.value if change.kind else None,
            change.urgency.value if change.urgency else None,
            change.contact_masked,
            change.case.kind.value if change.case else None,
            change.case.value if change.case else None,
            change.custody_event_id,
            change.feed_received_at,
        )
        for event_id, change, latency in changes
    ]
    return [list(column) for column in zip(*rows, strict=True)]


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
