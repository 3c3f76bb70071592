"""Agencies as agency.profile.v1 describes them: subscriptions are taken for known, active agencies only."""

from __future__ import annotations

from typing import Any

from services.subscription.domain.agency import Agency
from services.subscription.store.columns import column_list
from shared.db import Connection
from shared.events import AgencyProfile, AgencyResources

_COLUMNS = column_list(Agency)


async def upsert_agency(connection: Connection, profile: AgencyProfile) -> None:
    """Keep the newest profile; an older one arriving late changes nothing."""
    await connection.execute(
        """
        INSERT INTO agencies (agency_id, name, timezone, active, public_name_search, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (agency_id) DO UPDATE
            SET name = EXCLUDED.name, timezone = EXCLUDED.timezone, active = EXCLUDED.active,
                public_name_search = EXCLUDED.public_name_search, updated_at = EXCLUDED.updated_at
            WHERE agencies.updated_at <= EXCLUDED.updated_at
        """,
        profile.agency_id,
        profile.name,
        profile.timezone,
        profile.active,
        profile.public_name_search,
        profile.updated_at,
    )


async def save_agency_resources(connection: Connection, profile: AgencyProfile) -> None:
    """After :func:`upsert_agency`: the resources of the profile it kept (none of an older one arriving late)."""
    await connection.execute(
        "UPDATE agencies SET resources = $2 WHERE agency_id = $1 AND updated_at = $3",
        profile.agency_id,
        profile.resources.model_dump(mode="json"),
        profile.updated_at,
    )


async def get_agency(connection: Connection, agency_id: str) -> Agency | None:
    row = await connection.fetchrow(f"SELECT {_COLUMNS} FROM agencies WHERE agency_id = $1", agency_id)  # noqa: S608
    return None if row is None else Agency.model_validate(dict(row))


async def active_agencies(connection: Connection) -> list[Agency]:
    rows = await connection.fetch(f"SELECT {_COLUMNS} FROM agencies WHERE active ORDER BY name, agency_id")  # noqa: S608
    return [Agency.model_validate(dict(row)) for row in rows]


async def agency_resources(connection: Connection, agency_id: str) -> AgencyResources:
    resources: Any = await connection.fetchval("SELECT resources FROM agencies WHERE agency_id = $1", agency_id)
    return AgencyResources.model_validate(resources or {})
