"""Asynchronous bounces: a delivery status notification (RFC 3464) that our SMTP relay posts after it took a message.

``POST /v1/bounces/{sender}`` takes the DSN as it is (``message/rfc822`` or ``multipart/report``), signed by the
sender with ``X-Bounce-Signature: sha256=<hex HMAC-SHA256 of the body>`` under its key in
``DELIVERY_BOUNCE_SECRETS``. The body is capped and its signature checked before anything parses it. The report
names the attempt by the original ``Message-ID`` (its returned headers); only a recipient-level failure (5.1.x,
5.2.x) disables the address, through the same bookkeeping as a refusal at RCPT. Any other failure is no fault of
the address: the notice ends as a technical failure and operators get an ``ops.alert.v1``. Delays and successes
change nothing.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import logging
from dataclasses import dataclass
from email.message import Message
from typing import Literal

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel

from services.delivery import metrics, store
from services.delivery.api import ApiContext
from services.delivery.domain import failure_receipt, is_progress
from shared.db import Connection
from shared.events import DeliveryStatus, OpsAlert, event_source
from shared.events import new_event as make_event
from shared.outbox import enqueue
from shared.topics import OPS_ALERT
from shared.vocabulary import Channel

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Bounce-Signature"
SIGNATURE_SCHEME = "sha256="
SOURCE = event_source("delivery")


class BounceFormatError(ValueError):
    """The body is not a delivery status notification we can act on."""


@dataclass(frozen=True)
class Bounce:
    """One failed recipient of a DSN: the original message's ``Message-ID`` and the enhanced status code."""

    message_id: str
    status_code: str


BounceOutcome = Literal["disabled", "technical_failure", "ignored"]


class BounceResult(BaseModel):
    attempt_id: str | None
    outcome: BounceOutcome


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


async def _attempt_of(connection: Connection, message_id: str) -> store.AttemptRow | None:
    """The email attempt a Message-ID was made for (``<attempt id@domain>``), recorded before the SMTP call, so a
    bounce that beats our own bookkeeping of the hand-off still finds it."""
    attempt_id = message_id.strip("<>").rpartition("@")[0]
    attempt = await store.get_attempt(connection, attempt_id) if attempt_id else None
    if attempt is None or attempt.channel != Channel.EMAIL.value:
        return None
    return attempt if message_id in (attempt.email_message_id, attempt.provider_message_id) else None


async def _read_capped(request: Request, limit: int) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"a bounce report is at most {limit} bytes")
    return bytes(body)


async def _alert_operators(
    connection: Connection, attempt: store.AttemptRow, bounce: Bounce, context: ApiContext
) -> None:
    notification = await store.get_notification(connection, attempt.notification_id)
    if notification is None:
        return
    now = context.clock()
    alert = OpsAlert(
        kind="email_refused",
        agency_id=notification.request.agency_id,
        message=f"an email notice ({attempt.attempt_id}) bounced after hand-off with status {bounce.status_code}, "
        "which is not the address's fault: check the relay and the sender's reputation",
        at=now,
    )
    event = make_event(
        alert, source=SOURCE, subject=attempt.notification_id, event_id=f"{attempt.attempt_id}:bounce", at=now
    )
    topic = context.settings.kafka.topic(OPS_ALERT.name)
    await enqueue(connection, topic, notification.request.agency_id, event)


def bounces_router(context: ApiContext) -> APIRouter:
    router = APIRouter(prefix="/v1/bounces", tags=["callbacks"])
    settings = context.settings

    @router.post(
        "/{sender}",
        response_model=BounceResult,
        summary="A delivery status notification (RFC 3464) from our SMTP relay, HMAC-signed",
        responses={400: {"description": "Not a DSN"}, 403: {"description": "Bad signature"}, 404: {}, 413: {}},
    )
    async def bounce_report(sender: str, request: Request) -> BounceResult:
        secret = settings.bounce_secrets.get(sender)
        if secret is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no bounce sender {sender[:40]!r}")
        body = await _read_capped(request, settings.max_bounce_body_bytes)
        if not signature_is_valid(secret, body, request.headers.get(SIGNATURE_HEADER)):
            metrics.CALLBACKS.labels(f"bounce:{sender}", "forged").inc()
            log.warning("refused a bounce report with a bad signature from %s", sender)
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"invalid {SIGNATURE_HEADER}")
        try:
            bounce = parse_bounce(body)
        except BounceFormatError as error:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(error)) from None
        if bounce is None:
            return BounceResult(attempt_id=None, outcome="ignored")
        receipt = failure_receipt(Channel.EMAIL, bounce.status_code, permanent=True)
        async with context.runtime.pool.acquire() as connection, connection.transaction():
            attempt = await _attempt_of(connection, bounce.message_id)
            if attempt is None:
                metrics.CALLBACKS.labels(f"bounce:{sender}", "unknown").inc()
                raise HTTPException(status.HTTP_404_NOT_FOUND, "no email attempt with this Message-ID")
            if not is_progress(attempt.status, receipt.status):
                return BounceResult(attempt_id=attempt.attempt_id, outcome="ignored")  # a repeated report
            await context.bookkeeper.apply_receipt(
                connection,
                attempt.attempt_id,
                receipt,
                now=context.clock(),
                provider_message_id=bounce.message_id,
                detail=f"asynchronous bounce {bounce.status_code}",
            )
            if receipt.status is DeliveryStatus.TECHNICAL_FAILURE:
                await _alert_operators(connection, attempt, bounce, context)
        metrics.CALLBACKS.labels(f"bounce:{sender}", "applied").inc()
        outcome: BounceOutcome = "disabled" if receipt.disable is not None else "technical_failure"
        return BounceResult(attempt_id=attempt.attempt_id, outcome=outcome)

    return router
