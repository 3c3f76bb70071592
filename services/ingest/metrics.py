"""Ingest's own Prometheus metrics: what the ops dashboard needs to see a feed gone quiet."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

LAST_FEED = Gauge(
    "cw_ingest_last_feed_timestamp_seconds", "When the agency's last feed arrived (Unix time)", ["agency"]
)
RECORDS = Counter("cw_ingest_records_total", "Feed records by outcome", ["agency", "result"])
IN_CUSTODY = Gauge("cw_ingest_in_custody", "Subjects currently held by the agency", ["agency"])
FEED_STALE = Gauge("cw_ingest_feed_stale", "1 while the agency's feed is quieter than expected", ["agency"])
STORM_HOLDS = Gauge("cw_ingest_storm_hold_open", "1 while the agency's notices are held by a storm hold", ["agency"])
HELD_EVENTS = Counter("cw_ingest_held_events_total", "Custody events kept back by storm holds", ["agency"])
OVERRIDES = Counter("cw_ingest_overrides_total", "Operator overrides by result", ["agency", "result"])
SILENCE_NOTICES = Counter(
    "cw_ingest_feed_silence_notices_total", "Times subscribers were told an agency's feed is silent", ["agency"]
)
