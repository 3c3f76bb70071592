"""Admin routes of agencies: create, list, show and change them, and replace their contacts and referrals."""

from __future__ import annotations

from typing import Any

import asyncpg
from fastapi import APIRouter, HTTPException

from services.ingest.agencies import flows, store
from services.ingest.agencies.domain import Agency
from services.ingest.agencies.schemas import NOT_NULL, AgencyCreate, AgencyOut, AgencyUpdate, ResourcesIn
from services.ingest.deps import ADMIN, ADMIN_ONLY, AgencyId, Pool, Settings, existing_agency
from services.ingest.settings import IngestSettings

router = APIRouter(prefix=ADMIN, tags=["administration"], dependencies=ADMIN_ONLY)


@router.post("/agencies", summary="Create an agency", status_code=201, response_model=AgencyOut)
async def create_agency(body: AgencyCreate, pool: Pool, settings: Settings) -> Agency:
    async with pool.acquire() as connection:
        agency = await flows.create_agency(connection, settings, body.model_dump(exclude_unset=True))
    if agency is None:
        raise HTTPException(409, f"agency {body.agency_id!r} already exists")
    return agency


@router.get("/agencies", summary="List agencies", response_model=list[AgencyOut])
async def list_agencies(pool: Pool) -> list[Agency]:
    async with pool.acquire() as connection:
        return await store.list_agencies(connection)


@router.get("/agencies/{agency_id}", summary="One agency", response_model=AgencyOut)
async def get_agency(agency_id: AgencyId, pool: Pool) -> Agency:
    return await existing_agency(pool, agency_id)


@router.patch(
    "/agencies/{agency_id}", summary="Change an agency's profile, status map or CSV columns", response_model=AgencyOut
)
async def update_agency(agency_id: AgencyId, body: AgencyUpdate, pool: Pool, settings: Settings) -> Agency:
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    nulls = [name for name in NOT_NULL if name in changes and changes[name] is None]
    if nulls:
        raise HTTPException(422, f"these fields cannot be null: {nulls}")
    return await _updated(pool, settings, agency_id, changes)


@router.put(
    "/agencies/{agency_id}/resources",
    summary="Replace an agency's contacts and referrals (shown to its victims, published on agency.profile)",
    response_model=AgencyOut,
)
async def replace_resources(agency_id: AgencyId, body: ResourcesIn, pool: Pool, settings: Settings) -> Agency:
    return await _updated(pool, settings, agency_id, {"resources": body.published()})


async def _updated(pool: asyncpg.Pool, settings: IngestSettings, agency_id: str, changes: dict[str, Any]) -> Agency:
    """The agency with ``changes`` applied (and published); 404 when there is no such agency."""
    async with pool.acquire() as connection:
        agency = await flows.update_agency(connection, settings, agency_id, changes)
    if agency is None:
        raise HTTPException(404, f"unknown agency {agency_id!r}")
    return agency
