"""Matching's own Prometheus metrics (the consumer and HTTP metrics are in :mod:`shared.metrics`)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

NOTIFICATIONS = Counter(
    "cw_matching_notifications_total", "Notification requests decided", ["kind", "channel", "urgency"]
)
FAN_OUT = Histogram(
    "cw_matching_fanout",
    "Notification requests one custody change caused",
    buckets=(0, 1, 2, 5, 10, 20, 50, 100, 500),
)
UNMATCHED = Counter("cw_matching_unmatched_total", "Custody changes no active subscription matched")
SKIPPED = Counter("cw_matching_skipped_total", "Events applied without effect, by reason", ["reason"])
REPLAYED = Counter(
    "cw_matching_replayed_notifications_total", "Notification requests re-sent after an aborted transaction"
)
STALE_CHANGES = Counter(
    "cw_matching_stale_changes_total",
    "Custody changes older than their subject's newest applied one: recorded, nobody notified",
)
