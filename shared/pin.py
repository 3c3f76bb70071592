"""The voice PIN's keyed hash, shared by subscription (which stores it) and delivery (which checks a call's digits).

Keyed with the blind-index key both services hold and bound to the subscription: 10,000 PINs are trivial to try
against a bare hash, and the same PIN of two victims hashes differently.
"""

from __future__ import annotations

import hashlib
import hmac

PIN_HASH_CONTEXT = "voice-pin"


def hash_pin(key: str, subscription_id: str, pin: str) -> str:
    message = f"{PIN_HASH_CONTEXT}:{subscription_id}:{pin}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def pin_matches(key: str, subscription_id: str, entered: str, pin_hash: str) -> bool:
    """Constant-time comparison of what was keyed in with the stored hash."""
    return hmac.compare_digest(hash_pin(key, subscription_id, entered), pin_hash)
