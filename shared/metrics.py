"""Prometheus metrics common to all services (each service adds its own beside these)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CONSUMER_PROCESSED = Counter("cw_consumer_processed_total", "Events a consumer group processed", ["group", "topic"])
CONSUMER_RETRIED = Counter(
    "cw_consumer_retried_total", "Events sent to a retry topic after a failure", ["group", "topic"]
)
CONSUMER_DEAD_LETTERED = Counter(
    "cw_consumer_dead_lettered_total", "Events parked on a dead-letter topic", ["group", "topic"]
)
CONSUMER_SECONDS = Histogram("cw_consumer_handle_seconds", "Time to handle one event", ["group", "topic"])
OUTBOX_PUBLISHED = Counter("cw_outbox_published_total", "Outbox events published to Kafka", ["service"])
OUTBOX_BACKLOG = Gauge("cw_outbox_backlog", "Outbox events not yet published", ["service"])
HTTP_REQUESTS = Counter("cw_http_requests_total", "HTTP requests answered", ["service", "method", "route", "status"])
CONSUMER_DEGRADED = Gauge(
    "cw_consumer_degraded", "1 while a consumer group waits for a dependency that is down, else 0", ["group"]
)
CONSUMER_DEPENDENCY_WAITS = Counter(
    "cw_consumer_dependency_waits_total",
    "Times a consumer found a dependency down and waited to try the same records again",
    ["group", "dependency"],
)
