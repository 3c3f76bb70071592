"""Twilio request signatures (``X-Twilio-Signature``) of inbound SMS webhooks, voice webhooks and status callbacks.

The one place both services that take Twilio webhooks (subscription, delivery) check them, through the official
``twilio`` package's ``RequestValidator``: Twilio signs the full URL it called followed by every POST parameter,
sorted by name, as name+value, with HMAC-SHA1 keyed by the account's auth token, base64-encoded.
"""

from __future__ import annotations

from collections.abc import Mapping

from twilio.request_validator import RequestValidator


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """The signature Twilio would put on this request (the local sinks sign with it)."""
    return str(RequestValidator(auth_token).compute_signature(url, dict(params)))


def signature_is_valid(auth_token: str, url: str, params: Mapping[str, str], signature: str | None) -> bool:
    """Constant-time check (with and without the URL's default port, as Twilio signs); a missing signature is never
    valid."""
    if not signature:
        return False
    return bool(RequestValidator(auth_token).validate(url, dict(params), signature))
