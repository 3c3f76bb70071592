"""HTTP models of agencies' API keys."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str | None = Field(default=None, max_length=200)


class KeyCreated(BaseModel):
    key_id: str
    agency_id: str
    label: str | None
    created_at: datetime
    api_key: str = Field(description="Shown only now: store it in the agency's feed client.")


class KeyInfo(BaseModel):
    key_id: str
    label: str | None
    created_at: datetime
    revoked_at: datetime | None


class KeyRevoked(BaseModel):
    key_id: str
    agency_id: str
    revoked: bool
