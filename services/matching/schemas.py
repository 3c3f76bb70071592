"""Response models of matching's HTTP API."""

from __future__ import annotations

from pydantic import BaseModel, Field


class MatchingStats(BaseModel):
    """Sizes of matching's state: nothing about who subscribed or to what."""

    active_subscriptions: int
    reachable_contacts: int
    subjects_with_status: int
    sealed_subjects: int
    notification_requests: int = Field(description="Across all agencies.")
