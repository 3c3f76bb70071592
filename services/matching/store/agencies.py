"""Agencies' profiles (name, reminder policy), as ingest publishes them on ``agency.profile``."""

from __future__ import annotations

from typing import Any

from shared.db import Connection
from shared.events import AgencyProfile


async def save_agency_profile(connection: Connection, profile: AgencyProfile) -> None:
    await connection.execute(
        "INSERT INTO agency_profiles (agency_id, profile, updated_at) VALUES ($1, $2, $3)"
        " ON CONFLICT (agency_id) DO UPDATE SET profile = EXCLUDED.profile, updated_at = EXCLUDED.updated_at"
        " WHERE agency_profiles.updated_at <= EXCLUDED.updated_at",
        profile.agency_id,
        profile.model_dump(mode="json"),
        profile.updated_at,
    )


async def agency_profile(connection: Connection, agency_id: str) -> AgencyProfile | None:
    profile: Any = await connection.fetchval("SELECT profile FROM agency_profiles WHERE agency_id = $1", agency_id)
    return None if profile is None else AgencyProfile.model_validate(profile)
