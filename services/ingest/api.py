"""HTTP routes: agency feeds (API key) and administration (admin token). Thin: parse -> flows -> answer."""

from __future__ import annotations

import hashlib
import hmac
import logging
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.ingest import apikeys, files, flows, guards, store
from services.ingest.domain import DEFAULT_CSV_COLUMNS, DEFAULT_STATUS_MAP, Identifier, RecordIn, feed_is_stale
from services.ingest.schemas import (
    AgencyCreate,
    AgencyOut,
    AgencyUpdate,
    BatchResult,
    FeedHealth,
    FileJob,
    HoldDiscard,
    HoldRelease,
    KeyCreate,
    KeyCreated,
    KeyInfo,
    KeyRevoked,
    OverrideCreate,
    OverrideOut,
    ResourcesIn,
    RowError,
    SealRequest,
    SealResult,
    StormHoldOut,
)
from services.ingest.settings import IngestSettings
from shared.events import SubjectIdentifier
from shared.http import refuse_deep_json
from shared.runtime import ServiceRuntime

log = logging.getLogger(__name__)

bearer = HTTPBearer(auto_error=False, description="Agency API key, or the admin token for /v1/admin")
BATCH_SCHEMA = {
    "type": "object",
    "title": "Batch",
    "required": ["records"],
    "properties": {"records": {"type": "array", "items": RecordIn.model_json_schema()}},
}
AgencyId = Annotated[str, Path(min_length=1, max_length=64)]
FEEDS = "/v1/agencies/{agency_id}"


def _unauthorised(reason: str) -> HTTPException:
    return HTTPException(401, reason, headers={"WWW-Authenticate": "Bearer"})


def agency_out(agency: store.Agency) -> AgencyOut:
    return AgencyOut(
        agency_id=agency.agency_id,
        name=agency.name,
        timezone=agency.timezone,
        contact_phone=agency.contact_phone,
        victim_services_phone=agency.victim_services_phone,
        victim_services_url=agency.victim_services_url,
        expected_feed_interval_minutes=agency.expected_feed_interval_minutes,
        notices_paused=agency.notices_paused,
        active=agency.active,
        status_map=agency.status_map,
        csv_columns=agency.csv_columns,
        storm_window_minutes=agency.storm_window_minutes,
        storm_population_share=agency.storm_population_share,
        storm_min_changes=agency.storm_min_changes,
        storm_rate_multiple=agency.storm_rate_multiple,
        silence_notice_after_minutes=agency.silence_notice_after_minutes,
        public_name_search=agency.public_name_search,
        resources=agency.resources,
        reminders=agency.reminders,
        created_at=agency.created_at,
        updated_at=agency.updated_at,
    )


async def feed_health_of(runtime: ServiceRuntime, agency: store.Agency) -> FeedHealth:
    now = datetime.now(UTC)
    async with runtime.pool.acquire() as connection:
        counts = await store.feed_counts(connection, agency.agency_id, now)
        in_custody = await store.in_custody_count(connection, agency.agency_id)
    return FeedHealth(
        agency_id=agency.agency_id,
        name=agency.name,
        last_feed_at=agency.last_feed_at,
        expected_feed_interval_minutes=agency.expected_feed_interval_minutes,
        stale=agency.active
        and feed_is_stale(agency.last_feed_at, agency.created_at, agency.expected_feed_interval_minutes, now),
        notices_paused=agency.notices_paused,
        in_custody=in_custody,
        records_last_24h=counts.last_24h,
        records_total=counts.total,
    )


async def authenticated_agency(
    request: Request,
    agency_id: AgencyId,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> store.Agency:
    """The agency whose key was presented; 401 without a valid key, 403 for another agency's feed."""
    runtime: ServiceRuntime = request.app.state.runtime
    if credentials is None:
        log.warning("feed request without API key", extra={"agency_id": agency_id, "path": request.url.path})
        raise _unauthorised("missing API key: send 'Authorization: Bearer <key>'")
    token = credentials.credentials
    key_id = apikeys.key_id_of(token)
    async with runtime.pool.acquire() as connection:
        key = await store.find_key(connection, key_id) if key_id else None
        if key is None or not apikeys.key_matches(token, key.key_hash) or key.revoked_at is not None:
            log.warning(
                "feed request with invalid or revoked API key", extra={"agency_id": agency_id, "key_id": key_id}
            )
            raise _unauthorised("invalid or revoked API key")
        agency = await store.get_agency(connection, agency_id)
    if agency is None:
        log.warning("feed request for an unknown agency", extra={"agency_id": agency_id, "key_id": key_id})
        raise HTTPException(404, f"unknown agency {agency_id!r}")
    if key.agency_id != agency_id:
        log.warning(
            "API key of another agency refused",
            extra={"agency_id": agency_id, "key_agency_id": key.agency_id, "key_id": key_id},
        )
        raise HTTPException(403, "this API key may write only its own agency's feed")
    if not agency.active:
        raise HTTPException(403, f"agency {agency_id!r} is deactivated")
    return agency


AuthenticatedAgency = Annotated[store.Agency, Depends(authenticated_agency)]


def feed_router(runtime: ServiceRuntime, settings: IngestSettings) -> APIRouter:
    router = APIRouter(prefix=FEEDS, tags=["agency feeds"])

    @router.post(
        "/custody-events",
        summary="Push a batch of custody records",
        response_model=BatchResult,
        responses={400: {"description": "malformed JSON"}, 413: {"description": "too large"}, 422: {}},
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": BATCH_SCHEMA}}}},
    )
    async def push_custody_events(
        request: Request,
        agency: AuthenticatedAgency,
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)] = None,
    ) -> JSONResponse:
        """Each record is answered accepted, duplicate, stale, sealed or rejected (with the reason); valid records
        go through even when others are rejected. The raw batch is stored before it is applied. A retried request
        with the same ``Idempotency-Key`` and body gets the first answer; with another body, 422."""
        body = await request.body()  # no larger than max_body_bytes: the app's body limit for this endpoint
        if not body.strip():
            raise HTTPException(400, 'body is empty: send a JSON object {"records": [...]}')
        refuse_deep_json(body, settings.max_json_depth)  # whatever its Content-Type: refused before it is stored
        digest = hashlib.sha256(body).hexdigest()
        try:
            batch_id, _ = await flows.receive_json_batch(
                runtime.pool, settings, agency, body=body, body_sha256=digest, idempotency_key=idempotency_key
            )
        except flows.BatchInvalidError as invalid:
            raise HTTPException(invalid.status_code, str(invalid)) from None
        answer = await flows.process_json_batch(runtime.pool, settings, batch_id)
        return JSONResponse(answer.body, status_code=answer.status_code)

    @router.post(
        "/custody-files",
        summary="Upload a CSV export (streamed; processed in the background)",
        status_code=202,
        response_model=FileJob,
        openapi_extra={"requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}},
    )
    async def upload_custody_file(request: Request, agency: AuthenticatedAgency) -> FileJob:
        """The file is stored in chunks as it arrives; follow the job at ``GET .../custody-files/{job_id}``."""
        try:
            job_id = await files.receive_file(runtime.pool, settings, agency, request.stream())
        except files.FileRejectedError as rejected:
            raise HTTPException(rejected.status_code, str(rejected)) from None
        return await _job(agency.agency_id, job_id, limit=0, offset=0)

    @router.get(
        "/custody-files/{job_id}", summary="Progress and per-row errors of an uploaded file", response_model=FileJob
    )
    async def file_job(
        agency: AuthenticatedAgency,
        job_id: str,
        errors_limit: Annotated[int, Query(ge=0, le=10_000)] = 1_000,
        errors_offset: Annotated[int, Query(ge=0)] = 0,
    ) -> FileJob:
        return await _job(agency.agency_id, job_id, limit=errors_limit, offset=errors_offset)

    async def _job(agency_id: str, job_id: str, *, limit: int, offset: int) -> FileJob:
        try:
            uuid_text = str(uuid.UUID(job_id))
        except ValueError:
            raise HTTPException(404, f"no file job {job_id!r} for agency {agency_id!r}") from None
        async with runtime.pool.acquire() as connection:
            job = await store.find_batch(connection, agency_id, batch_id=uuid_text)
            if job is None or job.kind != "csv":
                raise HTTPException(404, f"no file job {job_id!r} for agency {agency_id!r}")
            errors = await store.row_errors(connection, job.batch_id, limit, offset)
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

    @router.post(
        "/sealed-subjects", summary="Seal a subject: no event and no disclosure from now on", response_model=SealResult
    )
    async def seal(agency: AuthenticatedAgency, request: SealRequest) -> SealResult:
        identifiers = [Identifier(i.kind, i.value) for i in request.identifiers]
        try:
            sealed = await flows.seal_subject(runtime.pool, settings, agency.agency_id, identifiers)
        except flows.SealConflictError as conflict:
            raise HTTPException(409, str(conflict)) from None
        return SealResult(
            subject_id=sealed.subject_id,
            sealed_at=sealed.sealed_at,
            identifiers=[SubjectIdentifier(kind=i.kind, value=i.value) for i in sealed.identifiers],
        )

    @router.get("/feed-health", summary="This agency's feed health", response_model=FeedHealth)
    async def agency_feed_health(agency: AuthenticatedAgency) -> FeedHealth:
        return await feed_health_of(runtime, agency)

    return router


def admin_router(runtime: ServiceRuntime, settings: IngestSettings) -> APIRouter:  # noqa: PLR0915 - one closure per route
    async def require_admin(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
    ) -> None:
        if credentials is None or not hmac.compare_digest(
            credentials.credentials.encode(), settings.admin_token.encode()
        ):
            log.warning("admin request refused", extra={"path": request.url.path})
            raise _unauthorised("missing or invalid admin token")

    router = APIRouter(prefix="/v1/admin", tags=["administration"], dependencies=[Depends(require_admin)])

    async def existing_agency(agency_id: str) -> store.Agency:
        async with runtime.pool.acquire() as connection:
            agency = await store.get_agency(connection, agency_id)
        if agency is None:
            raise HTTPException(404, f"unknown agency {agency_id!r}")
        return agency

    @router.post("/agencies", summary="Create an agency", status_code=201, response_model=AgencyOut)
    async def create_agency(body: AgencyCreate) -> AgencyOut:
        values = body.model_dump(mode="json", exclude_none=True)
        values["status_map"] = body.status_map or DEFAULT_STATUS_MAP
        values["csv_columns"] = body.csv_columns or DEFAULT_CSV_COLUMNS
        async with runtime.pool.acquire() as connection:
            agency = await flows.create_agency(connection, settings, values)
        if agency is None:
            raise HTTPException(409, f"agency {body.agency_id!r} already exists")
        return agency_out(agency)

    @router.get("/agencies", summary="List agencies", response_model=list[AgencyOut])
    async def list_agencies() -> list[AgencyOut]:
        async with runtime.pool.acquire() as connection:
            return [agency_out(agency) for agency in await store.list_agencies(connection)]

    @router.get("/agencies/{agency_id}", summary="One agency", response_model=AgencyOut)
    async def get_agency(agency_id: AgencyId) -> AgencyOut:
        return agency_out(await existing_agency(agency_id))

    @router.patch(
        "/agencies/{agency_id}",
        summary="Change an agency's profile, status map or CSV columns",
        response_model=AgencyOut,
    )
    async def update_agency(agency_id: AgencyId, body: AgencyUpdate) -> AgencyOut:
        changes = body.model_dump(mode="json", exclude_unset=True)
        nulls = [
            name
            for name in (
                "name",
                "timezone",
                "expected_feed_interval_minutes",
                "notices_paused",
                "active",
                "status_map",
                "csv_columns",
                "storm_window_minutes",
                "storm_population_share",
                "storm_min_changes",
                "storm_rate_multiple",
                "reminders",
            )
            if name in changes and changes[name] is None
        ]
        if nulls:
            raise HTTPException(422, f"these fields cannot be null: {nulls}")
        if body.status_map is not None:
            changes["status_map"] = body.status_map
        async with runtime.pool.acquire() as connection:
            agency = await flows.update_agency(connection, settings, agency_id, changes)
        if agency is None:
            raise HTTPException(404, f"unknown agency {agency_id!r}")
        return agency_out(agency)

    @router.put(
        "/agencies/{agency_id}/resources",
        summary="Replace an agency's contacts and referrals (shown to its victims, published on agency.profile)",
        response_model=AgencyOut,
    )
    async def replace_resources(agency_id: AgencyId, body: ResourcesIn) -> AgencyOut:
        async with runtime.pool.acquire() as connection:
            agency = await flows.update_agency(connection, settings, agency_id, {"resources": body.published()})
        if agency is None:
            raise HTTPException(404, f"unknown agency {agency_id!r}")
        return agency_out(agency)

    @router.post(
        "/agencies/{agency_id}/keys",
        summary="Issue an API key (shown once)",
        status_code=201,
        response_model=KeyCreated,
    )
    async def create_key(agency_id: AgencyId, body: KeyCreate | None = None) -> KeyCreated:
        await existing_agency(agency_id)
        new_key = apikeys.generate_key()
        label = body.label if body else None
        async with runtime.pool.acquire() as connection:
            created_at = await store.insert_key(connection, new_key.key_id, agency_id, new_key.key_hash, label)
        log.info("API key issued", extra={"agency_id": agency_id, "key_id": new_key.key_id})
        return KeyCreated(
            key_id=new_key.key_id, agency_id=agency_id, label=label, created_at=created_at, api_key=new_key.token
        )

    @router.get("/agencies/{agency_id}/keys", summary="An agency's API keys (never the keys themselves)")
    async def list_keys(agency_id: AgencyId) -> list[KeyInfo]:
        await existing_agency(agency_id)
        async with runtime.pool.acquire() as connection:
            keys = await store.list_keys(connection, agency_id)
        return [KeyInfo(key_id=k.key_id, label=k.label, created_at=k.created_at, revoked_at=k.revoked_at) for k in keys]

    @router.delete("/agencies/{agency_id}/keys/{key_id}", summary="Revoke an API key", response_model=KeyRevoked)
    async def revoke_key(agency_id: AgencyId, key_id: str) -> KeyRevoked:
        async with runtime.pool.acquire() as connection:
            revoked = await store.revoke_key(connection, agency_id, key_id)
        if not revoked:
            raise HTTPException(404, f"agency {agency_id!r} has no key {key_id!r}")
        log.info("API key revoked", extra={"agency_id": agency_id, "key_id": key_id})
        return KeyRevoked(key_id=key_id, agency_id=agency_id, revoked=True)

    @router.get("/storm-holds", summary="Storm holds, newest first", response_model=list[StormHoldOut])
    async def list_storm_holds(
        state: Annotated[Literal["holding", "released", "discarded"] | None, Query()] = None,
    ) -> list[StormHoldOut]:
        async with runtime.pool.acquire() as connection:
            holds = await store.list_holds(connection, state)
        return [StormHoldOut.model_validate(hold, from_attributes=True) for hold in holds]

    @router.get("/storm-holds/{hold_id}", summary="One storm hold", response_model=StormHoldOut)
    async def get_storm_hold(hold_id: uuid.UUID) -> StormHoldOut:
        async with runtime.pool.acquire() as connection:
            hold = await store.get_hold(connection, str(hold_id))
        if hold is None:
            raise HTTPException(404, f"no storm hold {hold_id}")
        return StormHoldOut.model_validate(hold, from_attributes=True)

    async def decide(hold_id: uuid.UUID, *, release: bool, operator: str, reason: str | None) -> StormHoldOut:
        try:
            hold = await guards.decide(
                runtime.pool, settings, str(hold_id), release=release, operator=operator, reason=reason
            )
        except guards.HoldNotFoundError:
            raise HTTPException(404, f"no storm hold {hold_id}") from None
        except guards.HoldDecidedError as decided:
            raise HTTPException(409, str(decided)) from None
        return StormHoldOut.model_validate(hold, from_attributes=True)

    @router.post(
        "/storm-holds/{hold_id}/release",
        summary="Release a storm hold: every held change is published, in feed order, and notifies",
        response_model=StormHoldOut,
    )
    async def release_storm_hold(hold_id: uuid.UUID, body: HoldRelease) -> StormHoldOut:
        return await decide(hold_id, release=True, operator=body.operator, reason=None)

    @router.post(
        "/storm-holds/{hold_id}/discard",
        summary="Discard a storm hold: no held change is published; the subjects go back to their state before it",
        response_model=StormHoldOut,
    )
    async def discard_storm_hold(hold_id: uuid.UUID, body: HoldDiscard) -> StormHoldOut:
        return await decide(hold_id, release=False, operator=body.operator, reason=body.reason)

    @router.post(
        "/agencies/{agency_id}/overrides",
        summary="Set a subject's custody status by hand (notifies like a feed record; never held)",
        status_code=201,
        response_model=OverrideOut,
    )
    async def create_override(agency_id: AgencyId, body: OverrideCreate) -> OverrideOut:
        request = guards.OverrideRequest(
            identifiers=guards.identifiers_of(body.person_number, body.booking_number, body.case_numbers),
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
            override = await flows.apply_override(runtime.pool, settings, agency_id, request)
        except flows.OverrideRejectedError as rejected:
            raise HTTPException(422, str(rejected)) from None
        if override is None:
            raise HTTPException(404, f"unknown agency {agency_id!r}")
        return OverrideOut.model_validate(override, from_attributes=True)

    @router.get(
        "/agencies/{agency_id}/overrides",
        summary="An agency's operator overrides, newest first",
        response_model=list[OverrideOut],
    )
    async def list_agency_overrides(agency_id: AgencyId) -> list[OverrideOut]:
        await existing_agency(agency_id)
        async with runtime.pool.acquire() as connection:
            overrides = await store.list_overrides(connection, agency_id)
        return [OverrideOut.model_validate(override, from_attributes=True) for override in overrides]

    @router.get("/feed-health", summary="Feed health of every agency", response_model=list[FeedHealth])
    async def all_feed_health() -> list[FeedHealth]:
        async with runtime.pool.acquire() as connection:
            agencies = await store.list_agencies(connection)
        return [await feed_health_of(runtime, agency) for agency in agencies]

    return router
