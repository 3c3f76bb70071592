"""Signed, unguessable tokens for manage links, email verification links and one-click unsubscribe.

Manage and unsubscribe tokens carry a per-subscription nonce kept in the database, so a leaked link can be revoked
by changing the nonce. Verification links are timed and name the code issue they belong to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer

MAX_TOKEN_LENGTH = 512


class InvalidTokenError(ValueError):
    """Forged, altered, truncated or made for another purpose."""


class ExpiredTokenError(ValueError):
    """Genuine but too old."""


@dataclass(frozen=True)
class SubscriptionClaim:
    subscription_id: str
    nonce: str


@dataclass(frozen=True)
class VerifyClaim:
    subscription_id: str
    issue: int


class Tokens:
    def __init__(self, secret: str) -> None:
        self._manage = URLSafeSerializer(secret, salt="custody-watch.manage")
        self._unsubscribe = URLSafeSerializer(secret, salt="custody-watch.unsubscribe-email")
        self._verify = URLSafeTimedSerializer(secret, salt="custody-watch.verify-email")

    def manage(self, subscription_id: str, nonce: str) -> str:
        return str(self._manage.dumps({"s": subscription_id, "n": nonce}))

    def unsubscribe(self, subscription_id: str, nonce: str) -> str:
        return str(self._unsubscribe.dumps({"s": subscription_id, "n": nonce}))

    def verify(self, subscription_id: str, issue: int) -> str:
        return str(self._verify.dumps({"s": subscription_id, "i": issue}))

    def read_manage(self, token: str) -> SubscriptionClaim:
        return _subscription_claim(_load(self._manage, token))

    def read_unsubscribe(self, token: str) -> SubscriptionClaim:
        return _subscription_claim(_load(self._unsubscribe, token))

    def read_verify(self, token: str, max_age_seconds: int) -> VerifyClaim:
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidTokenError("token too long")
        try:
            payload: Any = self._verify.loads(token, max_age=max_age_seconds)
        except SignatureExpired:
            raise ExpiredTokenError("link expired") from None
        except BadSignature:
            raise InvalidTokenError("bad signature") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("s"), str):
            raise InvalidTokenError("unexpected payload")
        issue = payload.get("i")
        if not isinstance(issue, int) or isinstance(issue, bool):
            raise InvalidTokenError("unexpected payload")
        return VerifyClaim(subscription_id=payload["s"], issue=issue)


def _load(serializer: URLSafeSerializer, token: str) -> Any:
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidTokenError("token too long")
    try:
        return serializer.loads(token)
    except BadSignature:
        raise InvalidTokenError("bad signature") from None


def _subscription_claim(payload: Any) -> SubscriptionClaim:
    if not isinstance(payload, dict):
        raise InvalidTokenError("unexpected payload")
    subscription_id, nonce = payload.get("s"), payload.get("n")
    if not isinstance(subscription_id, str) or not isinstance(nonce, str):
        raise InvalidTokenError("unexpected payload")
    return SubscriptionClaim(subscription_id=subscription_id, nonce=nonce)
