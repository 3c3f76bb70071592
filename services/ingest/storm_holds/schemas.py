"""HTTP models of storm holds and the admin's decisions on them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from services.ingest.schemas import Operator, Reason
from shared.vocabulary import CustodyStatus


class HeldSample(BaseModel):
    agency_record_id: str
    status: CustodyStatus
    previous_status: CustodyStatus | None
    effective_at: datetime
    facility: str | None
    display_name: str | None


class StormHoldOut(BaseModel):
    hold_id: str
    agency_id: str
    state: Literal["holding", "released", "discarded"]
    opened_at: datetime
    trigger: str = Field(description="Why the feed was held, in plain words.")
    held_changes: int
    urgent_changes: int
    by_status: dict[str, int]
    samples: list[HeldSample] = Field(description="The first held records, in feed order.")
    decided_at: datetime | None
    decided_by: str | None
    decision_reason: str | None


class HoldRelease(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    operator: Operator


class HoldDiscard(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    operator: Operator
    reason: Reason = Field(description="Why the held changes are false (kept with the hold).")
