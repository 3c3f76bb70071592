"""Admin routes of agencies' API keys: issue (shown once), list (never the keys themselves), revoke."""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException

from services.ingest.deps import ADMIN, ADMIN_ONLY, AgencyId, Pool, existing_agency
from services.ingest.keys import store
from services.ingest.keys.domain import generate_key
from services.ingest.keys.schemas import KeyCreate, KeyCreated, KeyInfo, KeyRevoked

log = logging.getLogger(__name__)

router = APIRouter(prefix=ADMIN, tags=["administration"], dependencies=ADMIN_ONLY)


@router.post(
    "/agencies/{agency_id}/keys", summary="Issue an API key (shown once)", status_code=201, response_model=KeyCreated
)
async def create_key(agency_id: AgencyId, pool: Pool, body: KeyCreate | None = None) -> KeyCreated:
    await existing_agency(pool, agency_id)
    new_key = generate_key()
    label = body.label if body else None
    async with pool.acquire() as connection:
        created_at = await store.insert_key(connection, new_key.key_id, agency_id, new_key.key_hash, label)
    log.info("API key issued", extra={"agency_id": agency_id, "key_id": new_key.key_id})
    return KeyCreated(
        key_id=new_key.key_id, agency_id=agency_id, label=label, created_at=created_at, api_key=new_key.token
    )


@router.get("/agencies/{agency_id}/keys", summary="An agency's API keys (never the keys themselves)")
async def list_keys(agency_id: AgencyId, pool: Pool) -> list[KeyInfo]:
    await existing_agency(pool, agency_id)
    async with pool.acquire() as connection:
        keys = await store.list_keys(connection, agency_id)
    return [KeyInfo.model_validate(key, from_attributes=True) for key in keys]


@router.delete("/agencies/{agency_id}/keys/{key_id}", summary="Revoke an API key", response_model=KeyRevoked)
async def revoke_key(agency_id: AgencyId, key_id: str, pool: Pool) -> KeyRevoked:
    async with pool.acquire() as connection:
        revoked = await store.revoke_key(connection, agency_id, key_id)
    if not revoked:
        raise HTTPException(404, f"agency {agency_id!r} has no key {key_id!r}")
    log.info("API key revoked", extra={"agency_id": agency_id, "key_id": key_id})
    return KeyRevoked(key_id=key_id, agency_id=agency_id, revoked=True)
