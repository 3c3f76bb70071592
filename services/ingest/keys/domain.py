"""Agency API keys: ``cwk_<key id>_<secret>``. The key id is visible (to find and revoke a key); only the SHA-256
of the whole key is stored, and it is compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

KEY_PREFIX = "cwk"


@dataclass(frozen=True)
class NewKey:
    key_id: str
    token: str
    key_hash: str


def hash_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def generate_key() -> NewKey:
    key_id = secrets.token_hex(6)
    token = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    return NewKey(key_id=key_id, token=token, key_hash=hash_key(token))


def key_id_of(token: str) -> str | None:
    """The key id inside a presented key, or None when it does not even look like one of ours."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(parts[1]) != 12 or not parts[2]:
        return None
    return parts[1]


def key_matches(token: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_key(token), stored_hash)
