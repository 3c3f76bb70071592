"""HTTP models of sealing a subject."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from shared.events import SubjectIdentifier


class SealRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    identifiers: list[SubjectIdentifier] = Field(min_length=1, max_length=50)


class SealResult(BaseModel):
    subject_id: str
    sealed_at: datetime
    identifiers: list[SubjectIdentifier]
