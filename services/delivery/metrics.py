"""Delivery metrics, beside the common ones in :mod:`shared.metrics`."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

NOTIFICATIONS = Counter(
    "cw_delivery_notifications_total",
    "Delivery attempt status changes, by channel, provider and status",
    ["channel", "provider", "status"],
)
LATENCY = Histogram(
    "cw_delivery_latency_seconds",
    "From the agency feed record's arrival to provider hand-off or to the delivered receipt",
    ["stage"],
    buckets=(1, 2, 5, 10, 30, 60, 120, 300, 900, 1800, 3600, 4 * 3600, 24 * 3600),
)
RETRIES_IN_FLIGHT = Gauge("cw_delivery_retries_in_flight", "Notifications waiting to retry a temporary failure")
CALLBACKS = Counter("cw_delivery_callbacks_total", "Provider status callbacks, by outcome", ["provider", "outcome"])
POSSIBLE_DUPLICATES = Counter(
    "cw_delivery_possible_duplicates_total",
    "Attempts sent again after a crash during a hand-off the provider cannot be asked about (SMTP)",
    ["channel"],
)
