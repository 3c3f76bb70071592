"""Everything the dashboard shows, as Prometheus metrics (beside the common ones in :mod:`shared.metrics`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

NOTIFICATIONS = Counter(
    "cw_ops_notifications_total",
    "Notification status changes seen by ops, by channel, provider and status",
    ["channel", "provider", "status"],
)
LATENCY = Histogram(
    "cw_ops_notification_latency_seconds",
    "From the agency feed record's arrival to provider hand-off (feed_to_handoff) or delivery (feed_to_delivered)",
    ["stage"],
    buckets=(1, 2, 5, 10, 30, 60, 120, 300, 900, 1800, 3600, 4 * 3600, 24 * 3600),
)
RETRIES_IN_FLIGHT = Gauge("cw_ops_retries_in_flight", "Notifications whose last status is a temporary failure")
CONSUMER_LAG = Gauge(
    "cw_ops_consumer_lag", "Messages not yet processed, per consumer group and topic", ["group", "topic"]
)
DLQ_SIZE = Gauge("cw_ops_dlq_size", "Messages on each consumer group's dead-letter topic", ["group"])
FEED_LAST_SEEN = Gauge("cw_ops_feed_last_seen_seconds", "Seconds since an agency's last feed", ["agency"])
FEED_STALE = Gauge("cw_ops_feed_stale", "1 while an agency's feed is quieter than its expected interval", ["agency"])
FEED_RECORDS = Gauge("cw_ops_feed_records", "Feed records per agency, by outcome", ["agency", "outcome"])
FEED_IN_CUSTODY = Gauge("cw_ops_feed_in_custody", "People in custody per agency, per its feed", ["agency"])
FEED_HEALTH_ERRORS = Counter("cw_ops_feed_health_errors_total", "Failed fetches of the ingest feed-health API")
ALERTS = Counter("cw_ops_alerts_total", "Alerts received on ops.alert.v1, by kind", ["kind"])
ADMIN_ACTIONS = Counter(
    "cw_ops_admin_actions_total", "Audited admin actions, by action and outcome", ["action", "outcome"]
)
LOGINS = Counter("cw_ops_logins_total", "Login attempts, by outcome", ["outcome"])
LOGIN_LOCKOUTS = Counter(
    "cw_ops_login_lockouts_total", "Failed logins after which one client address must wait to try a username again"
)
STORM_HOLDS_OPEN = Gauge("cw_ops_storm_holds_open", "Storm holds waiting for an admin to release or discard them")
STORM_HELD_CHANGES = Gauge(
    "cw_ops_storm_held_changes", "Custody changes held (not published) in open storm holds, per agency", ["agency"]
)
STORM_HOLD_ERRORS = Counter("cw_ops_storm_hold_errors_total", "Failed fetches of the ingest storm-holds API")
OVERRIDES = Counter("cw_ops_overrides_total", "Operator overrides sent to ingest, by ingest's result", ["result"])
