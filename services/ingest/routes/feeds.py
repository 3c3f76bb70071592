"""Agencies' custody-feed uploads (their API key required): JSON batches, CSV files and the files' progress.

Thin: parse -> flows -> answer. The request bodies' published schemas state what the uploads accept.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse

from services.ingest.agencies.domain import Agency
from services.ingest.deps import FEEDS, AuthenticatedAgency, Pool, Settings
from services.ingest.flows import batches, files
from services.ingest.schemas import (
    BATCH_RESPONSES,
    CSV_UPLOAD_DESCRIPTION,
    BatchResult,
    FileJob,
    RowError,
    csv_upload_schema,
    json_batch_schema,
)
from services.ingest.settings import IngestSettings
from services.ingest.store import batches as batches_store
from shared.http import refuse_deep_json

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)]


def feed_router(settings: IngestSettings) -> APIRouter:
    """The upload routes; their published body schemas state this deployment's limits."""
    router = APIRouter(prefix=FEEDS, tags=["agency feeds"])
    router.add_api_route(
        "/custody-events",
        push_custody_events,
        methods=["POST"],
        summary="Push a batch of custody records",
        response_model=BatchResult,
        responses=BATCH_RESPONSES,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": json_batch_schema(settings.max_records_per_batch)}},
            }
        },
    )
    router.add_api_route(
        "/custody-files",
        upload_custody_file,
        methods=["POST"],
        summary="Upload a CSV export (streamed; processed in the background)",
        description=CSV_UPLOAD_DESCRIPTION,
        status_code=202,
        response_model=FileJob,
        responses={400: {"description": "empty file"}, 413: {"description": "larger than the file limit"}},
        openapi_extra={"requestBody": {"required": True, "content": {"text/csv": {"schema": csv_upload_schema()}}}},
    )
    router.add_api_route(
        "/custody-files/{job_id}",
        file_job,
        methods=["GET"],
        summary="Progress and per-row errors of an uploaded file",
        response_model=FileJob,
    )
    return router


async def push_custody_events(
    request: Request,
    agency: AuthenticatedAgency,
    pool: Pool,
    settings: Settings,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Each record is answered accepted, duplicate, stale, sealed or rejected (with the reason); valid records
    go through even when others are rejected. The raw batch is stored before it is applied. A retried request
    with the same ``Idempotency-Key`` and body gets the first answer; with another body, 422."""
    body = await request.body()  # no larger than max_body_bytes: the app's body limit for this endpoint
    if not body.strip():
        raise HTTPException(400, 'body is empty: send a JSON object {"records": [...]}')
    refuse_deep_json(body, settings.max_json_depth)  # whatever its Content-Type: refused before it is stored
    _, answer = await store_and_apply(pool, settings, agency, body, idempotency_key, kind="json")
    return JSONResponse(answer.body, status_code=answer.status_code)


async def store_and_apply(
    pool: asyncpg.Pool,
    settings: IngestSettings,
    agency: Agency,
    body: bytes,
    idempotency_key: str | None,
    *,
    kind: Literal["json", "niem"],
) -> tuple[str, batches.StoredAnswer]:
    """Store the raw batch (a reused Idempotency-Key with another body is a 422), then apply it: its id and answer."""
    try:
        batch_id, _ = await batches.receive_batch(
            pool,
            settings,
            agency,
            body=body,
            body_sha256=hashlib.sha256(body).hexdigest(),
            idempotency_key=idempotency_key,
            kind=kind,
        )
    except batches.BatchInvalidError as invalid:
        raise HTTPException(invalid.status_code, str(invalid)) from None
    return batch_id, await batches.process_batch(pool, settings, batch_id)


async def upload_custody_file(request: Request, agency: AuthenticatedAgency, pool: Pool, settings: Settings) -> FileJob:
    """The file is stored in chunks as it arrives; follow the job at ``GET .../custody-files/{job_id}``."""
    try:
        job_id = await files.receive_file(pool, settings, agency, request.stream())
    except files.FileRejectedError as rejected:
        raise HTTPException(rejected.status_code, str(rejected)) from None
    return await _job(pool, agency.agency_id, job_id, limit=0, offset=0)


async def file_job(
    agency: AuthenticatedAgency,
    job_id: str,
    pool: Pool,
    errors_limit: Annotated[int, Query(ge=0, le=10_000)] = 1_000,
    errors_offset: Annotated[int, Query(ge=0)] = 0,
) -> FileJob:
    return await _job(pool, agency.agency_id, job_id, limit=errors_limit, offset=errors_offset)


async def _job(pool: Pool, agency_id: str, job_id: str, *, limit: int, offset: int) -> FileJob:
    try:
        uuid_text = str(uuid.UUID(job_id))
    except ValueError:
        raise HTTPException(404, f"no file job {job_id!r} for agency {agency_id!r}") from None
    async with pool.acquire() as connection:
        job = await batches_store.find_batch(connection, agency_id, batch_id=uuid_text)
        if job is None or job.kind != "csv":
            raise HTTPException(404, f"no file job {job_id!r} for agency {agency_id!r}")
        errors = await batches_store.row_errors(connection, job.batch_id, limit, offset)
    summary: dict[str, Any] = job.result or {}
    return FileJob(
        job_id=job.batch_id,
        agency_id=job.agency_id,
        status=job.status,
        received_at=job.received_at,
        processed_at=job.processed_at,
        size_bytes=job.size_bytes,
        rows_processed=job.rows_processed,
        rows_accepted=job.rows_accepted,
        rows_rejected=job.rows_rejected,
        summary={str(key): int(value) for key, value in summary.items()},
        error=job.error,
        errors=[RowError(row=row, record_id=record_id, reason=reason) for row, record_id, reason in errors],
    )
