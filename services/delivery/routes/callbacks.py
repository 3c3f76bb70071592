"""Providers' signed status callbacks, one route per channel that takes them (``callback_path``), all read the same
way: the channel reads its provider's form, the bookkeeping applies the receipt."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, status

from services.delivery import metrics
from services.delivery.channels.base import WebhookSigners
from services.delivery.channels.registry import AnyChannel
from services.delivery.deps import ApiContext, SignedForm, signed_twilio_form
from services.delivery.domain import is_progress
from services.delivery.flows.group_commit import BookkeepingUnavailableError
from services.delivery.providers.base import CallbackError
from services.delivery.schemas import CallbackResult
from services.delivery.store import attempts
from services.delivery.store.attempts import AttemptRow
from services.delivery.store.notifications import NotificationRow
from shared.db import Connection
from shared.events import DeliveryStatus


async def receipt_attempt(
    connection: Connection, *, reference: str | None, message_sid: str, label: str, signer: str
) -> tuple[AttemptRow, NotificationRow]:
    """The attempt a signed receipt is about with its notification (both locked), or the HTTP error that refuses it."""
    attempt_id = reference or await attempts.find_attempt_by_provider_message(connection, message_sid)
    locked = await attempts.lock_with_notification(connection, attempt_id) if attempt_id else None
    if locked is None:
        metrics.CALLBACKS.labels(label, "unknown").inc()
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no attempt with this reference or message id")
    attempt = locked[0]
    if attempt.provider is not None and attempt.provider != signer:
        metrics.CALLBACKS.labels(label, "forged").inc()
        raise HTTPException(status.HTTP_403_FORBIDDEN, "signed by another provider than the sender")
    if attempt.provider_message_id not in (None, message_sid):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "the message id does not match the attempt")
    return locked


def already_known(attempt: AttemptRow, reported: DeliveryStatus) -> bool:
    """A receipt that changes nothing: the hand-off is recorded and the attempt is already at (or past) the status.

    Attempt statuses only move forward, so the attempt as read settles it without a write (most "sent" callbacks
    arrive after the dispatcher's own bookkeeping).
    """
    return (
        attempt.handed_off_at is not None
        and attempt.provider_message_id is not None
        and not is_progress(attempt.status, reported)
    )


def _signers(channel: AnyChannel) -> Any:
    def of(request: Request) -> WebhookSigners | None:
        return channel.callback_signers(request.path_params.get("provider"))

    return of


def path_parameters(path: str) -> list[dict[str, Any]]:
    """The OpenAPI description of a callback path's parameters (the route reads them itself)."""
    names = re.findall(r"{(\w+)}", path)
    return [
        {"in": "path", "name": name, "required": True, "schema": {"title": name.title(), "type": "string"}}
        for name in names
    ]


def callbacks_router(context: ApiContext) -> APIRouter:
    router = APIRouter(prefix="/v1/callbacks", tags=["callbacks"])

    def status_callback(channel: AnyChannel) -> Any:
        signed_form = Depends(signed_twilio_form(context, _signers(channel)))

        async def receive(request: Request, signed: SignedForm = signed_form) -> CallbackResult:
            try:
                report = channel.read_callback(signed.params)
            except CallbackError as error:
                raise HTTPException(status.HTTP_400_BAD_REQUEST, str(error)) from None
            receipt = report.receipt
            reference = request.query_params.get("ref")
            now = context.clock()

            async def apply(connection: Connection) -> CallbackResult | HTTPException:
                # A refusal is returned, not raised: it wrote nothing, and the rest of the batch goes on.
                try:
                    locked = await receipt_attempt(
                        connection,
                        reference=reference,
                        message_sid=report.provider_message_id,
                        label=signed.label,
                        signer=signed.signer,
                    )
                except HTTPException as refusal:
                    return refusal
                attempt = locked[0]
                if already_known(attempt, receipt.status):
                    metrics.CALLBACKS.labels(signed.label, "repeated").inc()
                    return CallbackResult(attempt_id=attempt.attempt_id, status=attempt.status)
                applied = await context.bookkeeper.apply_receipt(
                    connection,
                    attempt.attempt_id,
                    receipt,
                    now=now,
                    provider=signed.signer,
                    provider_message_id=report.provider_message_id,
                    detail=report.detail,
                    locked=locked,
                )
                metrics.CALLBACKS.labels(signed.label, "applied").inc()
                return CallbackResult(attempt_id=attempt.attempt_id, status=applied or receipt.status)

            try:
                result = await context.group_commit.run(
                    reference or report.provider_message_id, apply, locks_key=reference is not None
                )
            except BookkeepingUnavailableError:
                raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "not stored; try again") from None
            if isinstance(result, HTTPException):
                raise result
            return result

        return receive

    for channel in context.channels.values():
        if channel.callback_path is None:
            continue
        parameters = path_parameters(channel.callback_path)
        router.add_api_route(
            channel.callback_path,
            status_callback(channel),
            methods=["POST"],
            name=f"{channel.channel}_status_callback",
            response_model=CallbackResult,
            summary=f"Status callback of {channel.channel} notices (X-Twilio-Signature checked)",
            responses={
                400: {"description": "Malformed"},
                403: {"description": "Bad signature"},
                404: {},
                503: {"description": "Not stored (the database?); the provider retries"},
            },
            openapi_extra={"parameters": parameters} if parameters else None,
        )
    return router
