"""Operator login: argon2 password hashes, signed session cookies backed by a session row, CSRF tokens, roles."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import HTTPException, Request
from itsdangerous import BadSignature, URLSafeTimedSerializer

from services.ops import store
from services.ops.domain import Role, may_act
from services.ops.settings import OpsSettings
from shared.db import Connection

SESSION_COOKIE = "cw_ops_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"

_hasher = PasswordHasher()
# Verified against when the username is unknown, so a wrong username takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password_strength(password: str) -> None:
    if len(password) < 12:
        raise ValueError("the password must be at least 12 characters")


@dataclass(frozen=True)
class Operator:
    username: str
    role: Role
    session_id: str
    csrf_token: str

    @property
    def is_admin(self) -> bool:
        return may_act(self.role)


class NotAuthenticatedError(Exception):
    """No valid session: HTML requests go to the login page, API requests get 401."""


async def authenticate(connection: Connection, username: str, password: str) -> Role | None:
    """The operator's role if the password matches (re-hashing an outdated hash), else None."""
    row = await store.get_operator(connection, username)
    try:
        _hasher.verify(row["password_hash"] if row else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None:
        return None
    if _hasher.check_needs_rehash(row["password_hash"]):
        await store.update_password_hash(connection, username, hash_password(password))
    return Role(row["role"])


class SessionSigner:
    def __init__(self, settings: OpsSettings) -> None:
        self._serializer = URLSafeTimedSerializer(settings.session_secret, salt="cw-ops-session")
        self._max_age = int(settings.session_hours * 3600)

    def sign(self, session_id: str) -> str:
        return self._serializer.dumps(session_id)

    def unsign(self, cookie: str) -> str | None:
        try:
            value = self._serializer.loads(cookie, max_age=self._max_age)
        except BadSignature:
            return None
        return value if isinstance(value, str) else None


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
    row = await store.get_session(connection, session_id)
    if row is None:
        return None
    return Operator(
        username=row["username"], role=Role(row["role"]), session_id=row["session_id"], csrf_token=row["csrf_token"]
    )


def require_admin(operator: Operator) -> None:
    if not operator.is_admin:
        raise HTTPException(status_code=403, detail="only admins may do this; you are signed in as a viewer")


async def require_csrf(request: Request, operator: Operator) -> None:
    """A POST must carry the session's CSRF token (form field or header); SameSite=Strict is the second line."""
    token = request.headers.get(CSRF_HEADER)
    if token is None:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        token = value if isinstance(value, str) else None
    if token is None or not secrets.compare_digest(token, operator.csrf_token):
        raise HTTPException(status_code=403, detail="missing or invalid CSRF token; reload the page and try again")
