"""Ingest consumes no topic: agencies push their feeds over HTTP. What its outbox writes is listed here."""

from __future__ import annotations

from shared.topics import AGENCY_PROFILE, CUSTODY_STATUS_CHANGED, FEED_SILENCE, OPS_ALERT, SUBJECT_SEALED, TopicSpec

CONSUMED_TOPICS: tuple[TopicSpec, ...] = ()
PRODUCED_TOPICS: tuple[TopicSpec, ...] = (
    CUSTODY_STATUS_CHANGED,
    SUBJECT_SEALED,
    AGENCY_PROFILE,
    OPS_ALERT,
    FEED_SILENCE,
)
