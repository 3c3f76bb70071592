"""Agencies as agency.profile.v1 describes them: subscriptions are taken for known, active agencies only."""

from __future__ import annotations

from typing import Any

from services.subscription.domain.agency import Agency
from shared.columns import column_list, fields_of, placeholders
from shared.db import Connection
from shared.events import AgencyProfile, AgencyResources

_COLUMNS = column_list(Agency)
# What a profile writes: the agency as subscription keeps it, and when the profile was made (newest wins).
_UPSERTED = (*fields_of(Agency), "updated_at")


async def upsert_agency(connection: Connection, profile: AgencyProfile) -> None:
    """Keep the newest profile; an older one arriving late changes nothing."""
    updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in _UPSERTED if name != "agency_id")
    await connection.execute(
        f"INSERT INTO agencies ({', '.join(_UPSERTED)}) VALUES ({placeholders(len(_UPSERTED))})"  # noqa: S608
        f" ON CONFLICT (agency_id) DO UPDATE SET {updates} WHERE agencies.updated_at <= EXCLUDED.updated_at",
        *(getattr(profile, name) for name in _UPSERTED),
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
