"""Twilio request signatures (``X-Twilio-Signature``), used for inbound SMS webhooks and status callbacks.

Twilio signs the full URL it called followed by every POST parameter, sorted by name, as name+value, with
HMAC-SHA1 keyed by the account's auth token, base64-encoded.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    payload = url + "".join(f"{name}{params[name]}" for name in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def signature_is_valid(auth_token: str, url: str, params: Mapping[str, str], signature: str | None) -> bool:
    """Constant-time check; a missing signature is never valid."""
    if not signature:
        return False
    return hmac.compare_digest(twilio_signature(auth_token, url, params), signature)
