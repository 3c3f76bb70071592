"""Admin routes of operator overrides: set a subject's custody status by hand, and list what was set."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from services.ingest.deps import ADMIN, ADMIN_ONLY, AgencyId, Pool, Settings, existing_agency
from services.ingest.overrides import flows, store
from services.ingest.overrides.domain import OverrideRequest, identifiers_of
from services.ingest.overrides.schemas import OverrideCreate, OverrideOut
from services.ingest.overrides.store import StoredOverride

router = APIRouter(prefix=ADMIN, tags=["administration"], dependencies=ADMIN_ONLY)


@router.post(
    "/agencies/{agency_id}/overrides",
    summary="Set a subject's custody status by hand (notifies like a feed record; never held)",
    status_code=201,
    response_model=OverrideOut,
)
async def create_override(agency_id: AgencyId, body: OverrideCreate, pool: Pool, settings: Settings) -> StoredOverride:
    request = OverrideRequest(
        identifiers=identifiers_of(body.person_number, body.booking_number, body.case_numbers),
        status=body.status,
        effective_at=body.effective_at,
        operator=body.operator,
        reason=body.reason,
        release_reason=body.release_reason,
        transfer_destination=body.transfer_destination,
        court_date=body.court_date,
        facility=body.facility,
        display_name=body.name,
    )
    try:
        override = await flows.apply_override(pool, settings, agency_id, request)
    except flows.OverrideRejectedError as rejected:
        raise HTTPException(422, str(rejected)) from None
    if override is None:
        raise HTTPException(404, f"unknown agency {agency_id!r}")
    return override


@router.get(
    "/agencies/{agency_id}/overrides",
    summary="An agency's operator overrides, newest first",
    response_model=list[OverrideOut],
)
async def list_agency_overrides(agency_id: AgencyId, pool: Pool) -> list[StoredOverride]:
    await existing_agency(pool, agency_id)
    async with pool.acquire() as connection:
        return await store.list_overrides(connection, agency_id)
