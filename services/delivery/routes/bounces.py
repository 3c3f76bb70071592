"""``POST /v1/bounces/{sender}``: asynchronous bounces (see ``providers/dsn``), signed by the sender under its key in
``DELIVERY_BOUNCE_SECRETS``. The body is capped and its signature checked before anything parses it. Only a
recipient-level failure (5.1.x, 5.2.x) disables the address, through the same bookkeeping as a refusal at RCPT. Any
other failure is no fault of the address: the notice ends as a technical failure and operators get an
``ops.alert.v1``. Delays and successes change nothing.
"""

from __future__ import annotations

import logging
from typing import Literal

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel

from services.delivery import metrics
from services.delivery.channels.email import EmailChannel
from services.delivery.deps import ApiContext
from services.delivery.domain import is_progress
from services.delivery.flows.events import SOURCE
from services.delivery.providers.dsn import (
    SIGNATURE_HEADER,
    Bounce,
    BounceFormatError,
    parse_bounce,
    signature_is_valid,
)
from services.delivery.store import attempts, notifications
from services.delivery.store.attempts import AttemptRow
from shared.db import Connection
from shared.envelope import new_event as make_event
from shared.events import DeliveryStatus, OpsAlert
from shared.outbox import enqueue
from shared.topics import OPS_ALERT

log = logging.getLogger(__name__)

BounceOutcome = Literal["disabled", "technical_failure", "ignored"]


class BounceResult(BaseModel):
    attempt_id: str | None
    outcome: BounceOutcome


async def _attempt_of(connection: Connection, message_id: str) -> AttemptRow | None:
    """The email attempt a Message-ID was made for (``<attempt id@domain>``), recorded before the SMTP call, so a
    bounce that beats our own bookkeeping of the hand-off still finds it."""
    attempt_id = message_id.strip("<>").rpartition("@")[0]
    attempt = await attempts.get_attempt(connection, attempt_id) if attempt_id else None
    if attempt is None or attempt.channel is not EmailChannel.channel:
        return None
    return attempt if message_id in (attempt.email_message_id, attempt.provider_message_id) else None


async def _read_capped(request: Request, limit: int) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"a bounce report is at most {limit} bytes")
    return bytes(body)


async def _alert_operators(connection: Connection, attempt: AttemptRow, bounce: Bounce, context: ApiContext) -> None:
    notification = await notifications.get_notification(connection, attempt.notification_id)
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


def bounces_router(context: ApiContext, email_channel: EmailChannel) -> APIRouter:
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
        receipt = email_channel.failure_receipt(bounce.status_code, permanent=True)
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
