"""Logging in and out: the throttle, the password check, the session row and the audit entry, in that order."""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
from dataclasses import dataclass
from typing import Any

import asyncpg

from services.ops import metrics
from services.ops.audit.store import audit
from services.ops.auth import store
from services.ops.auth.domain import Operator, Role, SessionSigner, hash_password, needs_rehash, password_matches
from services.ops.settings import OpsSettings
from shared.db import Connection

log = logging.getLogger(__name__)

PRUNE_INTERVAL_SECONDS = 3600.0


async def authenticate(connection: Connection, username: str, password: str) -> Role | None:
    """The operator's role if the password matches (re-hashing an outdated hash), else None."""
    account = await store.get_operator(connection, username)
    matched = password_matches(account, password)  # an unknown username takes as long as a wrong password
    if account is None or not matched:
        return None
    if needs_rehash(account.password_hash):
        await store.update_password_hash(connection, username, hash_password(password))
    return account.role


async def start_session(connection: Connection, username: str, settings: OpsSettings) -> tuple[str, str]:
    """A new session row; returns (session id, CSRF token)."""
    session_id = secrets.token_urlsafe(32)
    csrf_token = secrets.token_urlsafe(32)
    await store.create_session(connection, session_id, username, csrf_token, settings.session_hours)
    return session_id, csrf_token


async def load_operator(connection: Connection, signer: SessionSigner, cookie: str | None) -> Operator | None:
    session_id = signer.unsign(cookie) if cookie else None
    if session_id is None:
        return None
    session = await store.get_session(connection, session_id)
    return session.operator() if session else None


@dataclass(frozen=True)
class LoginOutcome:
    """A session id on success; else how long to wait (throttled) or neither (a wrong username or password)."""

    session_id: str | None = None
    wait_seconds: int | None = None


async def log_in(
    pool: asyncpg.Pool, settings: OpsSettings, *, client: str, username: str, password: str
) -> LoginOutcome:
    async with pool.acquire() as connection:
        return await _log_in(connection, settings, client=client, username=username, password=password)


async def _log_in(
    connection: Connection, settings: OpsSettings, *, client: str, username: str, password: str
) -> LoginOutcome:
    wait_if_wrong = await store.claim_login_try(connection, client, username, settings.login_throttle)
    if wait_if_wrong is None:
        metrics.LOGINS.labels("rate_limited").inc()
        return LoginOutcome(wait_seconds=math.ceil(await store.login_wait_seconds(connection, client, username)))
    role = await authenticate(connection, username, password)
    await store.record_login_attempt(connection, username, client, succeeded=role is not None)
    if role is None:
        metrics.LOGINS.labels("failed").inc()
        if wait_if_wrong > 0:
            metrics.LOGIN_LOCKOUTS.inc()
            detail = {"client": client, "wait_seconds": round(wait_if_wrong)}
            await audit(connection, username, "login", username, outcome="throttled", detail=detail)
        return LoginOutcome()
    await store.forget_login_failures(connection, client, username)
    session_id, _ = await start_session(connection, username, settings)
    await audit(connection, username, "login", username, outcome="ok", detail={"client": client})
    metrics.LOGINS.labels("ok").inc()
    return LoginOutcome(session_id=session_id)


async def log_out(pool: asyncpg.Pool, session_id: str) -> None:
    async with pool.acquire() as connection:
        await store.end_session(connection, session_id)


async def add_operator(
    connection: Connection, username: str, password: str, role: Role, *, by: str, detail: dict[str, Any] | None = None
) -> bool:
    """A new operator (only the password's hash is kept), audited as done ``by``; False when the name is taken."""
    created = await store.create_operator(connection, username, hash_password(password), role)
    if created:
        await audit(connection, by, "create_operator", username, outcome="ok", detail=detail)
    return created


async def ensure_bootstrap_admin(pool: asyncpg.Pool, settings: OpsSettings) -> None:
    username, password = settings.bootstrap_admin_username, settings.bootstrap_admin_password
    if username is None or password is None:
        return
    async with pool.acquire() as connection:
        if await add_operator(connection, username, password, Role.ADMIN, by="system"):
            log.info("bootstrap admin %s created", username)


async def prune_regularly(pool: asyncpg.Pool) -> None:
    """Old login attempts and sessions go at start and then hourly."""
    while True:
        async with pool.acquire() as connection:
            await store.prune(connection)
        await asyncio.sleep(PRUNE_INTERVAL_SECONDS)
