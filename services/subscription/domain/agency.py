"""An agency as subscription knows it from agency.profile.v1."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Agency(BaseModel):
    model_config = ConfigDict(frozen=True)

    agency_id: str
    name: str
    timezone: str
    active: bool
    public_name_search: bool = False
    victim_services_phone: str | None = None
