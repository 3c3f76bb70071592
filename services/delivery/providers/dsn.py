"""Delivery status notifications (RFC 3464) that our SMTP relay posts after it took a message, and the relay's
signature on them (``X-Bounce-Signature: sha256=<hex HMAC-SHA256 of the body>``).

Only the failed recipient matters: the original message's ``Message-ID`` (from the returned headers) names the
attempt, and the enhanced status code says what failed (:func:`services.delivery.providers.smtp.failure_receipt`
judges it like a refusal at RCPT). Delays and successes report nothing.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
from dataclasses import dataclass
from email.message import Message

SIGNATURE_HEADER = "X-Bounce-Signature"
SIGNATURE_SCHEME = "sha256="


class BounceFormatError(ValueError):
    """The body is not a delivery status notification we can act on."""


@dataclass(frozen=True)
class Bounce:
    """One failed recipient of a DSN: the original message's ``Message-ID`` and the enhanced status code."""

    message_id: str
    status_code: str


def sign(secret: str, body: bytes) -> str:
    """The ``X-Bounce-Signature`` value a sender puts on ``body``."""
    return SIGNATURE_SCHEME + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_is_valid(secret: str, body: bytes, signature: str | None) -> bool:
    return signature is not None and hmac.compare_digest(sign(secret, body), signature.strip())


def _delivery_status_blocks(report: Message) -> list[Message]:
    for part in report.walk():
        if part.get_content_type() == "message/delivery-status":
            blocks = part.get_payload()
            if isinstance(blocks, list):
                return [block for block in blocks if isinstance(block, Message)]
    raise BounceFormatError("no message/delivery-status part (not a DSN)")


def _original_message_id(report: Message) -> str:
    for part in report.walk():
        content_type = part.get_content_type()
        returned: Message | None = None
        if content_type == "text/rfc822-headers":
            returned = email.message_from_string(str(part.get_payload(decode=False)), policy=email.policy.default)
        elif content_type == "message/rfc822" and part is not report:
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                returned = payload[0]
        message_id = returned.get("Message-ID") if returned is not None else None
        if message_id:
            return str(message_id).strip()
    raise BounceFormatError("the DSN does not return the original message's Message-ID")


def parse_bounce(body: bytes) -> Bounce | None:
    """The failed recipient of a DSN, or None when it reports no failure (delayed, delivered, relayed)."""
    report = email.message_from_bytes(body, policy=email.policy.default)
    blocks = _delivery_status_blocks(report)
    failed = [block for block in blocks[1:] if str(block.get("Action", "")).strip().lower() == "failed"]
    if not failed:
        return None
    status_code = str(failed[0].get("Status", "")).strip().split(" ")[0]
    if not status_code or not status_code[0].isdigit():
        raise BounceFormatError("the failed recipient has no Status code")
    return Bounce(message_id=_original_message_id(report), status_code=status_code)
