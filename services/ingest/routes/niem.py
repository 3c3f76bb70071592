"""An agency's route for NIEM XML custody exchanges: the same flow and answer as the JSON push, with an XML body."""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse

from services.ingest.deps import FEEDS, AuthenticatedAgency, Pool, Settings
from services.ingest.routes.feeds import IdempotencyKey, store_and_apply
from services.ingest.schemas import NIEM_RESPONSES, NIEM_UPLOAD_DESCRIPTION, BatchResult, niem_upload_schema

log = logging.getLogger(__name__)

XML_MEDIA_TYPES = frozenset({"application/xml", "text/xml"})

router = APIRouter(prefix=FEEDS, tags=["agency feeds"])


def is_xml_media_type(content_type: str | None) -> bool:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return media_type in XML_MEDIA_TYPES or (media_type.startswith("application/") and media_type.endswith("+xml"))


@router.post(
    "/custody-events/niem",
    summary="Push a NIEM Justice custody exchange (XML)",
    description=NIEM_UPLOAD_DESCRIPTION,
    response_model=BatchResult,
    responses=NIEM_RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {media_type: {"schema": niem_upload_schema()} for media_type in sorted(XML_MEDIA_TYPES)},
        }
    },
)
async def push_niem_exchange(
    request: Request,
    agency: AuthenticatedAgency,
    pool: Pool,
    settings: Settings,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    if not is_xml_media_type(request.headers.get("content-type")):
        raise HTTPException(
            415,
            f"Content-Type {request.headers.get('content-type') or '(none)'!r} is not XML: "
            "send the exchange as 'application/xml'",
        )
    body = await request.body()  # no larger than max_body_bytes: the app's body limit for this endpoint
    if not body.strip():
        raise HTTPException(
            400, "body is empty: send a NIEM BookingReport, CustodyReleaseReport or CustodyStatusChangeReport"
        )
    batch_id, answer = await store_and_apply(pool, settings, agency, body, idempotency_key, kind="niem")
    if answer.fresh and answer.status_code >= 400:  # a DTD or external entity may be an attack: worth a look
        log.warning(
            "NIEM exchange refused: %s",
            answer.body.get("detail"),
            extra={"agency_id": agency.agency_id, "batch_id": batch_id, "status_code": answer.status_code},
        )
    return JSONResponse(answer.body, status_code=answer.status_code)
