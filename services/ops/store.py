"""All of the ops database: operators, sessions, audit log, notifications, alerts, feeds, replays."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from services.ops.domain import FeedHealth, Role
from services.ops.settings import LoginThrottle
from shared.db import Connection
from shared.events import NotificationStatusChanged, OpsAlert

# --- Operators, sessions, logins, audit ----------------------------------------------------------------------------


async def create_operator(connection: Connection, username: str, password_hash: str, role: Role) -> bool:
    """False when the username is taken."""
    created = await connection.fetchval(
        "INSERT INTO operators (username, password_hash, role) VALUES ($1, $2, $3)"
        " ON CONFLICT (username) DO NOTHING RETURNING true",
        username,
        password_hash,
        role.value,
    )
    return bool(created)


async def get_operator(connection: Connection, username: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await connection.fetchrow(
        "SELECT username, password_hash, role FROM operators WHERE username = $1 AND disabled_at IS NULL", username
    )
    return row


async def update_password_hash(connection: Connection, username: str, password_hash: str) -> None:
    await connection.execute("UPDATE operators SET password_hash = $2 WHERE username = $1", username, password_hash)


async def claim_login_try(connection: Connection, client: str, username: str, throttle: LoginThrottle) -> float | None:
    """Count a try of (client, username) as failed in advance, unless that pair must still wait: None then.

    Returns how long the pair must wait after this try if it fails. One statement, so parallel guesses each
    see the ones before them; a success forgets the pair (:func:`forget_login_failures`).
    """
    wait = await connection.fetchval(
        "WITH capped AS ("
        " SELECT count(*) >= $3 AS over FROM login_attempts"
        " WHERE NOT succeeded AND at > clock_timestamp() - make_interval(secs => $4))"
        " INSERT INTO login_throttle AS t (client, username, failures, next_allowed_at)"
        " VALUES ($1, $2, 1, clock_timestamp() + make_interval(secs => CASE"
        "  WHEN (SELECT over FROM capped) THEN $7 WHEN 1 < $5 THEN 0 ELSE $6 END))"
        " ON CONFLICT (client, username) DO UPDATE SET"
        "  failures = t.failures + 1,"
        "  next_allowed_at = clock_timestamp() + make_interval(secs => CASE"
        "   WHEN (SELECT over FROM capped) THEN $7"
        "   WHEN t.failures + 1 < $5 THEN 0"
        "   ELSE least($7, $6 * 2 ^ least(t.failures + 1 - $5, 30)) END)"
        " WHERE t.next_allowed_at <= clock_timestamp()"
        " RETURNING extract(epoch FROM next_allowed_at - clock_timestamp())",
        client,
        username,
        throttle.global_failure_cap,
        throttle.window_seconds,
        throttle.free_failures,
        throttle.base_delay_seconds,
        throttle.max_delay_seconds,
    )
    return None if wait is None else max(0.0, float(wait))


async def login_wait_seconds(connection: Connection, client: str, username: str) -> float:
    value = await connection.fetchval(
        "SELECT extract(epoch FROM next_allowed_at - clock_timestamp()) FROM login_throttle"
        " WHERE client = $1 AND username = $2",
        client,
        username,
    )
    return max(0.0, float(value or 0))


async def forget_login_failures(connection: Connection, client: str, username: str) -> None:
    await connection.execute("DELETE FROM login_throttle WHERE client = $1 AND username = $2", client, username)


async def record_login_attempt(connection: Connection, username: str, client: str, *, succeeded: bool) -> None:
    await connection.execute(
        "INSERT INTO login_attempts (username, client, succeeded) VALUES ($1, $2, $3)", username, client, succeeded
    )


async def create_session(connection: Connection, session_id: str, username: str, csrf_token: str, hours: float) -> None:
    await connection.execute(
        "INSERT INTO sessions (session_id, username, csrf_token, expires_at)"
        " VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
        session_id,
        username,
        csrf_token,
        hours * 3600,
    )


async def get_session(connection: Connection, session_id: str) -> asyncpg.Record | None:
    """The live session with its operator, or None when it expired, ended or its operator was disabled."""
    row: asyncpg.Record | None = await connection.fetchrow(
        "SELECT s.session_id, s.csrf_token, o.username, o.role FROM sessions s"
        " JOIN operators o USING (username)"
        " WHERE s.session_id = $1 AND s.ended_at IS NULL AND s.expires_at > now() AND o.disabled_at IS NULL",
        session_id,
    )
    return row


async def end_session(connection: Connection, session_id: str) -> None:
    await connection.execute("UPDATE sessions SET ended_at = now() WHERE session_id = $1", session_id)


async def audit(
    connection: Connection,
    username: str,
    action: str,
    target: str,
    *,
    outcome: str,
    detail: dict[str, Any] | None = None,
) -> None:
    await connection.execute(
        "INSERT INTO audit_log (username, action, target, outcome, detail) VALUES ($1, $2, $3, $4, $5)",
        username,
        action,
        target,
        outcome,
        detail or {},
    )


async def recent_audit(connection: Connection, limit: int = 100) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await connection.fetch(
        "SELECT at, username, action, target, outcome, detail FROM audit_log ORDER BY at DESC, id DESC LIMIT $1",
        limit,
    )
    return rows


async def recent_admin_actions(connection: Connection, username: str, window_seconds: float) -> int:
    """Admin actions this operator attempted within the window (logins and refusals for the limit itself aside)."""
    value = await connection.fetchval(
        "SELECT count(*) FROM audit_log WHERE username = $1 AND action <> 'login' AND outcome <> 'rate_limited'"
        " AND at > now() - make_interval(secs => $2)",
        username,
        window_seconds,
    )
    return int(value or 0)


async def audit_of(connection: Connection, action: str, target: str, limit: int = 20) -> list[asyncpg.Record]:
    """One kind of action on one target, newest first (e.g. every block of one notice)."""
    rows: list[asyncpg.Record] = await connection.fetch(
        "SELECT at, username, outcome, detail FROM audit_log WHERE action = $1 AND target = $2"
        " ORDER BY at DESC, id DESC LIMIT $3",
        action,
        target,
        limit,
    )
    return rows


# --- Notifications -------------------------------------------------------------------------------------------------


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


async def hourly_outcomes(connection: Connection, since: datetime) -> list[asyncpg.Record]:
    """Delivered and failed status changes per hour since ``since`` (hours with none included)."""
    rows: list[asyncpg.Record] = await connection.fetch(
        "SELECT hours.hour,"
        " count(e.event_id) FILTER (WHERE e.status = 'delivered') AS delivered,"
        " count(e.event_id) FILTER (WHERE e.status IN ('temporary-failure', 'permanent-failure',"
        "   'technical-failure')) AS failed"
        " FROM generate_series(date_trunc('hour', $1::timestamptz), date_trunc('hour', now()), interval '1 hour')"
        "   AS hours(hour)"
        " LEFT JOIN notification_events e ON e.at >= hours.hour AND e.at < hours.hour + interval '1 hour'"
        " GROUP BY hours.hour ORDER BY hours.hour",
        since,
    )
    return rows


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


NOTIFICATION_COLUMNS = (
    "notification_id, subscription_id, agency_id, channel, provider, status, error_code, attempt, kind, urgency,"
    " contact_masked, case_kind, case_value, custody_event_id, feed_received_at, first_at, last_at"
)


async def newest_failures(connection: Connection, limit: int = 20) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await connection.fetch(
        "SELECT e.notification_id, e.agency_id, e.channel, e.provider, e.status, e.error_code, e.attempt, e.at,"
        " n.case_value FROM notification_events e JOIN notifications n USING (notification_id)"
        " WHERE e.status IN ('temporary-failure', 'permanent-failure', 'technical-failure')"
        " ORDER BY e.at DESC LIMIT $1",
        limit,
    )
    return rows


async def newest_notifications(connection: Connection, limit: int = 20) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await connection.fetch(
        f"SELECT {NOTIFICATION_COLUMNS} FROM notifications ORDER BY last_at DESC LIMIT $1",  # noqa: S608 - constant
        limit,
    )
    return rows


async def search_notifications(connection: Connection, query: str, limit: int = 100) -> list[asyncpg.Record]:
    """Notifications whose id, subscription id or case number is ``query`` (case numbers case-insensitively)."""
    rows: list[asyncpg.Record] = await connection.fetch(
        f"SELECT {NOTIFICATION_COLUMNS} FROM notifications"  # noqa: S608 - constant column list
        " WHERE notification_id = $1 OR subscription_id = $1 OR lower(case_value) = lower($1)"
        " ORDER BY last_at DESC LIMIT $2",
        query,
        limit,
    )
    return rows


async def get_notification(connection: Connection, notification_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await connection.fetchrow(
        f"SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE notification_id = $1",  # noqa: S608 - constant
        notification_id,
    )
    return row


async def notification_history(connection: Connection, notification_id: str) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await connection.fetch(
        "SELECT event_id, status, provider, error_code, attempt, at, latency_seconds FROM notification_events"
        " WHERE notification_id = $1 ORDER BY at, received_at",
        notification_id,
    )
    return rows


# --- Alerts and feeds ----------------------------------------------------------------------------------------------


async def record_alert(connection: Connection, event_id: str, source: str, alert: OpsAlert) -> bool:
    inserted = await connection.fetchval(
        "INSERT INTO alerts (event_id, source, kind, agency_id, message, at) VALUES ($1, $2, $3, $4, $5, $6)"
        " ON CONFLICT (event_id) DO NOTHING RETURNING true",
        event_id,
        source,
        alert.kind,
        alert.agency_id,
        alert.message,
        alert.at,
    )
    return bool(inserted)


async def recent_alerts(connection: Connection, limit: int = 20) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await connection.fetch(
        "SELECT source, kind, agency_id, message, at FROM alerts ORDER BY at DESC LIMIT $1", limit
    )
    return rows


async def lock_feed(connection: Connection, agency_id: str) -> asyncpg.Record | None:
    """The feed's last known state, locked for this transaction (two replicas never alert twice)."""
    row: asyncpg.Record | None = await connection.fetchrow(
        "SELECT stale, stale_since FROM feeds WHERE agency_id = $1 FOR UPDATE", agency_id
    )
    return row


async def save_feed(
    connection: Connection, feed: FeedHealth, *, stale: bool, stale_since: datetime | None, checked_at: datetime
) -> None:
    await connection.execute(
        "INSERT INTO feeds (agency_id, name, last_feed_at, records_accepted, records_rejected, in_custody,"
        " expected_feed_interval_minutes, notices_paused, stale, stale_since, checked_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        " ON CONFLICT (agency_id) DO UPDATE SET name = EXCLUDED.name, last_feed_at = EXCLUDED.last_feed_at,"
        " records_accepted = EXCLUDED.records_accepted, records_rejected = EXCLUDED.records_rejected,"
        " in_custody = EXCLUDED.in_custody, expected_feed_interval_minutes = EXCLUDED.expected_feed_interval_minutes,"
        " notices_paused = coalesce(EXCLUDED.notices_paused, feeds.notices_paused), stale = EXCLUDED.stale,"
        " stale_since = EXCLUDED.stale_since, checked_at = EXCLUDED.checked_at",
        feed.agency_id,
        feed.name or feed.agency_id,
        feed.last_feed_at,
        feed.records_accepted,
        feed.records_rejected,
        feed.in_custody,
        feed.expected_feed_interval_minutes,
        feed.notices_paused,
        stale,
        stale_since,
        checked_at,
    )


async def set_feed_paused(connection: Connection, agency_id: str, *, paused: bool) -> None:
    await connection.execute("UPDATE feeds SET notices_paused = $2 WHERE agency_id = $1", agency_id, paused)


async def list_feeds(connection: Connection) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await connection.fetch(
        "SELECT agency_id, name, last_feed_at, records_accepted, records_rejected, in_custody,"
        " expected_feed_interval_minutes, notices_paused, stale, stale_since, checked_at"
        " FROM feeds ORDER BY stale DESC, agency_id"
    )
    return rows


# --- Replays -------------------------------------------------------------------------------------------------------


async def claim_replay(
    connection: Connection, topic: str, partition: int, offset: int, *, target: str, username: str
) -> bool:
    """False when this dead letter was replayed already."""
    claimed = await connection.fetchval(
        'INSERT INTO replays (topic, partition, "offset", target, username) VALUES ($1, $2, $3, $4, $5)'
        " ON CONFLICT DO NOTHING RETURNING true",
        topic,
        partition,
        offset,
        target,
        username,
    )
    return bool(claimed)


async def replayed_offsets(connection: Connection) -> dict[tuple[str, int, int], asyncpg.Record]:
    rows = await connection.fetch('SELECT topic, partition, "offset", username, at FROM replays')
    return {(row["topic"], row["partition"], row["offset"]): row for row in rows}


async def prune(connection: Connection, *, keep_days: int = 30) -> None:
    """Forget login attempts older than a day and sessions long over; the audit log is kept."""
    await connection.execute("DELETE FROM login_attempts WHERE at < now() - interval '1 day'")
    await connection.execute("DELETE FROM login_throttle WHERE next_allowed_at < now() - interval '1 day'")
    await connection.execute(
        "DELETE FROM sessions WHERE coalesce(ended_at, expires_at) < now() - make_interval(days => $1)", keep_days
    )
