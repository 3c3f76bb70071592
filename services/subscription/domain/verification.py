"""Verification codes: six digits, stored only as a keyed hash, expiring, with a bounded number of attempts.

Five attempts at a six-digit code give a guesser a 1 in 200,000 chance per code; new codes are throttled, so a
brute force cannot succeed in any useful time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from services.subscription.domain.errors import ConflictError, GoneError, InvalidRequestError, TooManyRequestsError
from shared.vocabulary import Channel

CODE_DIGITS = 6
NOTIFICATION_NAMESPACE = uuid.UUID("0b6f4d0e-7c55-4c1a-9a57-3f1d2b8c9e01")


def generate_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def hash_code(key: str, subscription_id: str, channel: Channel, issue: int, code: str) -> str:
    """Keyed, and bound to its issue: a database dump alone does not let anyone test the million codes."""
    message = f"{subscription_id}:{channel.value}:{issue}:{code}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def verification_notification_id(subscription_id: str, channel: Channel, issue: int) -> str:
    """Deterministic: the same code issue always yields the same notice id, so delivery sends it once."""
    return str(uuid.uuid5(NOTIFICATION_NAMESPACE, f"verification:{subscription_id}:{channel.value}:{issue}"))


def clean_code(raw: str) -> str:
    """Accept the code as people type it ("123 456", "123-456"); refuse anything else clearly."""
    digits = "".join(ch for ch in raw if ch not in " -")
    if len(digits) != CODE_DIGITS or not digits.isascii() or not digits.isdigit():
        raise InvalidRequestError(f"the code has {CODE_DIGITS} digits")
    return digits


class Challenge(BaseModel):
    """One issued code for one contact point of one subscription."""

    model_config = ConfigDict(frozen=True)

    issue: int
    code_hash: str
    created_at: datetime
    expires_at: datetime
    attempts: int = 0
    consumed_at: datetime | None = None


class CodeCheck(StrEnum):
    VERIFIED = "verified"
    WRONG = "wrong"
    EXPIRED = "expired"
    EXHAUSTED = "exhausted"
    USED = "used"


def check_code(challenge: Challenge, attempt_hash: str, now: datetime, max_attempts: int) -> CodeCheck:
    """Judge one attempt. Every outcome but USED/EXHAUSTED/EXPIRED counts as an attempt (the caller records it)."""
    if challenge.consumed_at is not None:
        return CodeCheck.USED
    if challenge.attempts >= max_attempts:
        return CodeCheck.EXHAUSTED
    if now >= challenge.expires_at:
        return CodeCheck.EXPIRED
    if hmac.compare_digest(challenge.code_hash, attempt_hash):
        return CodeCheck.VERIFIED
    return CodeCheck.WRONG


def problem_for(outcome: CodeCheck, attempts_left: int) -> Exception:
    """The error a failed attempt answers with."""
    if outcome is CodeCheck.USED:
        return ConflictError("this code was already used; the contact is verified")
    if outcome is CodeCheck.EXHAUSTED:
        return TooManyRequestsError("too many wrong codes: request a new code")
    if outcome is CodeCheck.EXPIRED:
        return GoneError("this code has expired: request a new code")
    if attempts_left <= 0:
        return TooManyRequestsError("wrong code, and no attempts left: request a new code")
    return InvalidRequestError(f"wrong code: {attempts_left} attempt{'s' if attempts_left != 1 else ''} left")


def resend_wait(
    issued_at: list[datetime], now: datetime, *, min_interval_seconds: int, max_per_hour: int
) -> int | None:
    """Seconds to wait before another code may be issued, or None when one may be issued now.

    ``issued_at`` are the times codes were issued for this contact point (the first one included).
    """
    recent = sorted(t for t in issued_at if t > now - timedelta(hours=1))
    waits: list[float] = []
    if recent:
        since_last = (now - recent[-1]).total_seconds()
        if since_last < min_interval_seconds:
            waits.append(min_interval_seconds - since_last)
    if len(recent) >= max_per_hour:
        waits.append((recent[len(recent) - max_per_hour] + timedelta(hours=1) - now).total_seconds())
    if not waits:
        return None
    return max(1, int(max(waits) + 0.999))
