"""HTTP models of operator overrides."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.ingest.schemas import Operator, Reason
from shared.vocabulary import CustodyStatus, ReleaseReason


class OverrideCreate(BaseModel):
    """A custody status set by hand while the feed is down; it notifies subscribers like a feed record."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    person_number: str | None = Field(default=None, max_length=64)
    booking_number: str | None = Field(default=None, max_length=64)
    case_numbers: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=50)
    status: CustodyStatus
    effective_at: datetime = Field(description="When the status took effect; with a time zone offset.")
    release_reason: ReleaseReason | None = None
    transfer_destination: str | None = Field(default=None, max_length=200)
    court_date: datetime | None = None
    facility: str | None = Field(default=None, max_length=200)
    name: str | None = Field(default=None, max_length=200)
    operator: Operator
    reason: Reason

    @model_validator(mode="after")
    def _complete(self) -> OverrideCreate:
        if not (self.person_number or self.booking_number or any(case.strip() for case in self.case_numbers)):
            raise ValueError("give a person_number, booking_number or case_numbers")
        for name, moment in (("effective_at", self.effective_at), ("court_date", self.court_date)):
            if moment is not None and moment.utcoffset() is None:
                raise ValueError(f"{name} needs a time zone offset")
        if self.effective_at > datetime.now(UTC) + timedelta(minutes=5):
            raise ValueError("effective_at is in the future")
        if self.status is CustodyStatus.COURT_DATE_SET and self.court_date is None:
            raise ValueError("court_date_set needs a court_date")
        if self.release_reason is not None and self.status is not CustodyStatus.RELEASED:
            raise ValueError("release_reason only goes with status released")
        return self


class OverrideOut(BaseModel):
    override_id: str
    agency_id: str
    subject_id: str
    result: Literal["accepted", "duplicate", "stale", "sealed"] = Field(
        description="accepted: a change, notices go out; duplicate: already that status; stale: older than the "
        "subject's newest record; sealed: the subject is sealed, nothing disclosed."
    )
    event_id: str | None
    status: CustodyStatus
    effective_at: datetime
    operator: str
    reason: str
    created_at: datetime
