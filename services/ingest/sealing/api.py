"""An agency's route to seal a subject (its API key required)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from services.ingest.deps import FEEDS, AuthenticatedAgency, Pool, Settings
from services.ingest.domain.records import Identifier
from services.ingest.sealing import flows
from services.ingest.sealing.schemas import SealRequest, SealResult
from shared.events import SubjectIdentifier

router = APIRouter(prefix=FEEDS, tags=["agency feeds"])


@router.post(
    "/sealed-subjects", summary="Seal a subject: no event and no disclosure from now on", response_model=SealResult
)
async def seal(agency: AuthenticatedAgency, request: SealRequest, pool: Pool, settings: Settings) -> SealResult:
    identifiers = [Identifier(i.kind, i.value) for i in request.identifiers]
    try:
        sealed = await flows.seal_subject(pool, settings, agency.agency_id, identifiers)
    except flows.SealConflictError as conflict:
        raise HTTPException(409, str(conflict)) from None
    return SealResult(
        subject_id=sealed.subject_id,
        sealed_at=sealed.sealed_at,
        identifiers=[SubjectIdentifier(kind=i.kind, value=i.value) for i in sealed.identifiers],
    )
