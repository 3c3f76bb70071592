"""Held storms, without I/O: ingest's storm holds, which are open and which decided, and what a decision says."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class HoldState(StrEnum):
    HOLDING = "holding"
    RELEASED = "released"
    DISCARDED = "discarded"


class HeldSample(BaseModel):
    """One held change, as the agency's feed reported it (the subject's name is shown to operators only)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    agency_record_id: str
    status: str
    previous_status: str | None = None
    effective_at: datetime
    facility: str | None = None
    display_name: str | None = None


class StormHold(BaseModel):
    """A burst of urgent changes from one agency that ingest holds until an admin releases or discards it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    hold_id: str = Field(min_length=1)
    agency_id: str
    state: HoldState
    opened_at: datetime
    trigger: str
    held_changes: int = Field(ge=0)
    urgent_changes: int = Field(ge=0)
    by_status: dict[str, int] = Field(default_factory=dict)
    samples: list[HeldSample] = Field(default_factory=list)
    decided_at: datetime | None = None
    decided_by: str | None = None
    decision_reason: str | None = None


def split_holds(
    holding: Iterable[StormHold], recent: Iterable[StormHold], decided_shown: int
) -> tuple[list[StormHold], list[StormHold]]:
    """Open holds (oldest first: it has waited longest) and the newest decided ones (newest decision first).

    ``recent`` (every state) was fetched after ``holding``, so where both list a hold, its state there is the newer.
    """
    latest = {hold.hold_id: hold for hold in holding}
    latest.update({hold.hold_id: hold for hold in recent})
    open_holds = [hold for hold in latest.values() if hold.state is HoldState.HOLDING]
    decided = [hold for hold in latest.values() if hold.state is not HoldState.HOLDING]
    open_holds.sort(key=lambda hold: hold.opened_at)
    decided.sort(key=lambda hold: hold.decided_at or hold.opened_at, reverse=True)
    return open_holds, decided[:decided_shown]


def hold_released_message(hold: StormHold) -> str:
    return (
        f"Released storm hold {hold.hold_id} of {hold.agency_id}: its {hold.held_changes} held changes are"
        " published in feed order and notices go out."
    )


def hold_discarded_message(hold: StormHold) -> str:
    return (
        f"Discarded storm hold {hold.hold_id} of {hold.agency_id}: none of its {hold.held_changes} held changes"
        " is published and the subjects are rolled back; the agency's corrected feed flows as normal."
    )
