"""FastAPI dependencies of the ingest API: the runtime's pool and settings, agency API keys and the admin token."""

from __future__ import annotations

import hmac
import logging
from typing import Annotated

import asyncpg
from fastapi import Depends, HTTPException, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.ingest.agencies import store as agencies_store
from services.ingest.agencies.domain import Agency
from services.ingest.keys import store as keys_store
from services.ingest.keys.domain import key_id_of, key_matches
from services.ingest.settings import IngestSettings
from shared.runtime import ServiceRuntime

log = logging.getLogger(__name__)

FEEDS = "/v1/agencies/{agency_id}"
"""Where an agency's feed endpoints live (its API key required)."""
ADMIN = "/v1/admin"
"""Where the administration endpoints live (the admin token required)."""

bearer = HTTPBearer(auto_error=False, description="Agency API key, or the admin token for /v1/admin")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
AgencyId = Annotated[str, Path(min_length=1, max_length=64)]


def runtime_of(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


Runtime = Annotated[ServiceRuntime, Depends(runtime_of)]


def pool_of(runtime: Runtime) -> asyncpg.Pool:
    return runtime.pool


def settings_of(runtime: Runtime) -> IngestSettings:
    settings = runtime.settings
    if not isinstance(settings, IngestSettings):
        raise TypeError(f"the ingest API runs with IngestSettings, not {type(settings).__name__}")
    return settings


Pool = Annotated[asyncpg.Pool, Depends(pool_of)]
Settings = Annotated[IngestSettings, Depends(settings_of)]


def unauthorised(reason: str) -> HTTPException:
    return HTTPException(401, reason, headers={"WWW-Authenticate": "Bearer"})


async def authenticated_agency(request: Request, agency_id: AgencyId, credentials: Credentials, pool: Pool) -> Agency:
    """The agency whose key was presented; 401 without a valid key, 403 for another agency's feed."""
    if credentials is None:
        log.warning("feed request without API key", extra={"agency_id": agency_id, "path": request.url.path})
        raise unauthorised("missing API key: send 'Authorization: Bearer <key>'")
    token = credentials.credentials
    key_id = key_id_of(token)
    async with pool.acquire() as connection:
        key = await keys_store.find_key(connection, key_id) if key_id else None
        if key is None or not key_matches(token, key.key_hash) or key.revoked_at is not None:
            log.warning(
                "feed request with invalid or revoked API key", extra={"agency_id": agency_id, "key_id": key_id}
            )
            raise unauthorised("invalid or revoked API key")
        agency = await agencies_store.get_agency(connection, agency_id)
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


AuthenticatedAgency = Annotated[Agency, Depends(authenticated_agency)]


async def require_admin(request: Request, credentials: Credentials, settings: Settings) -> None:
    if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), settings.admin_token.encode()):
        log.warning("admin request refused", extra={"path": request.url.path})
        raise unauthorised("missing or invalid admin token")


ADMIN_ONLY = [Depends(require_admin)]


async def existing_agency(pool: asyncpg.Pool, agency_id: str) -> Agency:
    """The agency, or 404."""
    async with pool.acquire() as connection:
        agency = await agencies_store.get_agency(connection, agency_id)
    if agency is None:
        raise HTTPException(404, f"unknown agency {agency_id!r}")
    return agency
