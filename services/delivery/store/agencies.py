"""Agency profiles, as ``agency.profile.v1`` last told them (the notice text and the pause read them)."""

from __future__ import annotations

from typing import Any

from shared.db import Connection
from shared.events import AgencyProfile


async def upsert_agency(connection: Connection, profile: AgencyProfile) -> bool:
    """Keep the newest profile of each agency; an older one arriving late changes nothing."""
    updated = await connection.fetchval(
        "INSERT INTO agencies (agency_id, profile, notices_paused, updated_at) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (agency_id) DO UPDATE SET profile = EXCLUDED.profile,"
        " notices_paused = EXCLUDED.notices_paused, updated_at = EXCLUDED.updated_at"
        " WHERE agencies.updated_at <= EXCLUDED.updated_at RETURNING true",
        profile.agency_id,
        profile.model_dump(mode="json"),
        profile.notices_paused,
        profile.updated_at,
    )
    return bool(updated)


async def agencies_of(connection: Connection, agency_ids: list[str]) -> dict[str, AgencyProfile]:
    rows = await connection.fetch(
        "SELECT agency_id, profile FROM agencies WHERE agency_id = ANY($1::text[])", agency_ids
    )
    return {row["agency_id"]: AgencyProfile.model_validate(row["profile"]) for row in rows}


async def get_agency(connection: Connection, agency_id: str) -> AgencyProfile | None:
    document: Any = await connection.fetchval("SELECT profile FROM agencies WHERE agency_id = $1", agency_id)
    return None if document is None else AgencyProfile.model_validate(document)
