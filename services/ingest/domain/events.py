"""Ids of the events ingest publishes: fixed by what caused them, so a retry repeats nothing."""

from __future__ import annotations

import uuid

from shared.envelope import event_source

EVENT_NAMESPACE = uuid.UUID("5b0c1f5e-3f55-4a57-9b4c-2f0d6c2a9e11")
EVENT_SOURCE = event_source("ingest")


def stable_id(name: str) -> str:
    """The same id for the same cause every time (uuid5 in ingest's namespace)."""
    return str(uuid.uuid5(EVENT_NAMESPACE, name))


def subject_id_for(agency_id: str, first_record_id: str) -> str:
    """Deterministic, so re-processing a raw batch after a crash creates the same subject and the same events."""
    return stable_id(f"subject:{agency_id}/{first_record_id}")


def event_id_for(agency_id: str, record_id: str) -> str:
    return stable_id(f"custody:{agency_id}/{record_id}")


def event_key(agency_id: str, subject_id: str) -> str:
    return f"{agency_id}/{subject_id}"
