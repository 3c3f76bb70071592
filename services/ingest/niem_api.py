"""HTTP route for NIEM XML custody exchanges: the same flow and answer as the JSON push, with an XML body."""

from __future__ import annotations

import hashlib
import logging
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Request
from fastapi.responses import JSONResponse

from services.ingest import flows
from services.ingest.api import FEEDS, AuthenticatedAgency
from services.ingest.niem import Exchange
from services.ingest.schemas import BatchResult
from services.ingest.settings import IngestSettings
from shared.runtime import ServiceRuntime

log = logging.getLogger(__name__)

XML_MEDIA_TYPES = frozenset({"application/xml", "text/xml"})
EXCHANGE_NAMES = ", ".join(f"{{{exchange.namespace}}}{exchange.value}" for exchange in Exchange)


def is_xml_media_type(content_type: str | None) -> bool:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return media_type in XML_MEDIA_TYPES or (media_type.startswith("application/") and media_type.endswith("+xml"))


def niem_router(runtime: ServiceRuntime, settings: IngestSettings) -> APIRouter:
    router = APIRouter(prefix=FEEDS, tags=["agency feeds"])

    @router.post(
        "/custody-events/niem",
        summary="Push a NIEM Justice custody exchange (XML)",
        response_model=BatchResult,
        responses={
            400: {"description": "not well-formed XML, or a DTD / entity / external reference (refused)"},
            413: {"description": "too large, or more custody parts than a batch may have"},
            415: {"description": "not an XML content type"},
            422: {"description": "unknown root element or NIEM version, no custody part, or Idempotency-Key reused"},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/xml": {"schema": {"type": "string", "description": EXCHANGE_NAMES}}},
            }
        },
    )
    async def push_niem_exchange(
        request: Request,
        agency: AuthenticatedAgency,
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)] = None,
    ) -> JSONResponse:
        """A BookingReport, CustodyReleaseReport or CustodyStatusChangeReport (NIEM 3.0, Justice 5.0-5.2).

        Each custody part (booking, release, status change) is answered like a record of the JSON push, by its
        position in the document: accepted, duplicate, stale, sealed or rejected with the reason. The raw document is
        stored before it is read; a retry with the same ``Idempotency-Key`` and body gets the first answer."""
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
        digest = hashlib.sha256(body).hexdigest()
        try:
            batch_id, _ = await flows.receive_json_batch(
                runtime.pool,
                settings,
                agency,
                body=body,
                body_sha256=digest,
                idempotency_key=idempotency_key,
                kind="niem",
            )
        except flows.BatchInvalidError as invalid:
            raise HTTPException(invalid.status_code, str(invalid)) from None
        answer = await flows.process_json_batch(runtime.pool, settings, batch_id)
        if answer.fresh and answer.status_code >= 400:  # a DTD or external entity may be an attack: worth a look
            log.warning(
                "NIEM exchange refused: %s",
                answer.body.get("detail"),
                extra={"agency_id": agency.agency_id, "batch_id": batch_id, "status_code": answer.status_code},
            )
        return JSONResponse(answer.body, status_code=answer.status_code)

    return router
