"""Who may do what, and how an operator proves who they are: roles, argon2 password hashes, signed session ids."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, URLSafeTimedSerializer
from pydantic import BaseModel, ConfigDict

from services.ops.settings import OpsSettings

SESSION_COOKIE = "cw_ops_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
MIN_PASSWORD_LENGTH = 12


class Role(StrEnum):
    VIEWER = "viewer"
    ADMIN = "admin"


def may_act(role: Role) -> bool:
    """Only admins replay dead letters and pause agencies; viewers only look."""
    return role is Role.ADMIN


@dataclass(frozen=True)
class Operator:
    """The operator of a live session."""

    username: str
    role: Role
    session_id: str
    csrf_token: str

    @property
    def is_admin(self) -> bool:
        return may_act(self.role)


class OperatorAccount(BaseModel):
    """An operator's row: enabled accounts only."""

    model_config = ConfigDict(frozen=True)

    username: str
    password_hash: str
    role: Role


class LiveSession(BaseModel):
    """A session that has neither expired nor ended, with its operator."""

    model_config = ConfigDict(frozen=True)

    session_id: str
    csrf_token: str
    username: str
    role: Role

    def operator(self) -> Operator:
        return Operator(username=self.username, role=self.role, session_id=self.session_id, csrf_token=self.csrf_token)


_hasher = PasswordHasher()
# Verified against when the username is unknown, so a wrong username takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"the password must be at least {MIN_PASSWORD_LENGTH} characters")


def password_matches(account: OperatorAccount | None, password: str) -> bool:
    """Checks against a dummy hash when there is no account, so both answers take as long."""
    try:
        _hasher.verify(account.password_hash if account else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return False
    return account is not None


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


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


def safe_next(target: str | None) -> str:
    """Only a path on this site: never an open redirect to another host."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
