"""The voice channel's webhooks, each signed by the voice provider (``X-Twilio-Signature``) and checked.

- ``POST /v1/calls/{attempt}/twiml``: the answered call asks what to say. A machine (``AnsweredBy=machine_*``) gets
  the notice as a message; a person gets it with the PIN prompt when it is urgent and a PIN was chosen.
- ``POST /v1/calls/{attempt}/pin?try=N``: the ``<Gather>`` action. The right PIN acknowledges the notice (its
  repeats stop; subscription is told) and says so; a wrong one is asked again, up to 3 tries; nothing keyed in plays
  the notice once more (``heard=2``), then says goodbye.
- ``POST /v1/callbacks/voice?ref={attempt}``: call progress, mapped onto our statuses like any receipt.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import Response

from services.delivery import metrics, store
from services.delivery.api import ApiContext, already_known, receipt_attempt
from services.delivery.domain import IMMEDIATE_KINDS
from services.delivery.providers.twilio_voice import call_receipt, is_machine
from services.delivery.rendering import CallStep, NoticeRenderer, TemplateError
from services.delivery.schemas import CallbackResult
from shared.crypto import ContactCipher
from shared.pin import pin_matches
from shared.twilio import signature_is_valid
from shared.vocabulary import Urgency

log = logging.getLogger(__name__)

PIN_TRIES = 3
MAX_FIELD = 256


@dataclass(frozen=True)
class VoiceContext:
    api: ApiContext
    renderer: NoticeRenderer
    cipher: ContactCipher


def voice_router(context: VoiceContext) -> APIRouter:  # noqa: PLR0915 - one route each, sharing the signature check
    router = APIRouter(tags=["voice"])
    api = context.api
    settings = api.settings
    provider = settings.voice_provider
    base = settings.public_base_url.rstrip("/")

    async def signed_form(request: Request) -> dict[str, str]:
        try:
            form = await request.form()
        except Exception as error:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "body is not a form") from error
        params = {key: value for key, value in form.items() if isinstance(value, str)}
        if len(params) != len(form):
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "file uploads are not accepted")
        url = base + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if not signature_is_valid(provider.auth_token, url, params, request.headers.get("X-Twilio-Signature")):
            metrics.CALLBACKS.labels(provider.name, "forged").inc()
            log.warning("refused a voice webhook with a bad signature")
            raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid X-Twilio-Signature")
        return params

    async def call_of(attempt_id: str, params: dict[str, str]) -> tuple[store.AttemptRow, store.NotificationRow]:
        async with api.runtime.pool.acquire() as connection:
            attempt = await store.get_attempt(connection, attempt_id)
            notification = await store.get_notification(connection, attempt.notification_id) if attempt else None
        if attempt is None or notification is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no call attempt with this reference")
        if attempt.provider_message_id not in (None, params.get("CallSid")):
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "CallSid does not match the attempt")
        return attempt, notification

    async def twiml(notification: store.NotificationRow, step: CallStep, *, confirm: bool, action: str) -> Response:
        request = notification.request
        async with api.runtime.pool.acquire() as connection:
            agency = await store.get_agency(connection, request.agency_id)
        secret = context.cipher.decrypt(request.secret_ciphertext) if request.secret_ciphertext else None
        try:
            call = context.renderer.render_call(
                request, agency, step=step, confirm=confirm, action_url=action, secret=secret
            )
        except TemplateError as error:
            log.error("call for notice %s cannot be rendered: %s", request.notification_id, error)
            raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR, "the call cannot be rendered") from None
        return Response(call.twiml, media_type="application/xml")

    def pin_url(attempt_id: str, tries: int, heard: int) -> str:
        return f"{base}/v1/calls/{quote(attempt_id, safe='')}/pin?try={tries}&heard={heard}"

    async def asks_for_pin(notification: store.NotificationRow) -> bool:
        """Urgent custody notices ask for the PIN; a code or a HELP reply is urgent only in that it cannot wait."""
        request = notification.request
        if request.urgency is not Urgency.URGENT or request.kind in IMMEDIATE_KINDS or notification.acknowledged_at:
            return False
        async with api.runtime.pool.acquire() as connection:
            return await store.voice_pin_hash(connection, notification.request.subscription_id) is not None

    @router.post("/v1/calls/{attempt_id}/twiml", summary="TwiML of an answered notice call (signed)")
    async def call_twiml(attempt_id: str, request: Request) -> Response:
        params = await signed_form(request)
        _, notification = await call_of(attempt_id, params)
        machine = is_machine(params.get("AnsweredBy"))
        confirm = await asks_for_pin(notification)
        step = CallStep.MACHINE if machine else CallStep.NOTICE
        return await twiml(notification, step, confirm=confirm, action=pin_url(attempt_id, 1, 1))

    @router.post("/v1/calls/{attempt_id}/pin", summary="The PIN keyed in on a notice call (signed)")
    async def call_pin(
        attempt_id: str,
        request: Request,
        tries: int = Query(default=1, alias="try", ge=1, le=PIN_TRIES),
        heard: int = Query(default=1, ge=1, le=2),
    ) -> Response:
        params = await signed_form(request)
        attempt, notification = await call_of(attempt_id, params)
        digits = params.get("Digits", "")[:MAX_FIELD]
        if not digits:
            step = CallStep.REPEAT if heard == 1 else CallStep.GOODBYE  # the notice once more, then goodbye
            return await twiml(notification, step, confirm=True, action=pin_url(attempt_id, tries, heard + 1))
        subscription_id = notification.request.subscription_id
        async with api.runtime.pool.acquire() as connection:
            pin_hash = await store.voice_pin_hash(connection, subscription_id)
        if pin_hash is not None and pin_matches(settings.blind_index_key, subscription_id, digits, pin_hash):
            async with api.runtime.pool.acquire() as connection, connection.transaction():
                await api.bookkeeper.acknowledge(connection, attempt.notification_id, now=api.clock(), publish=True)
            log.info("notice %s acknowledged by PIN on a call", attempt.notification_id)
            return await twiml(notification, CallStep.ACCEPTED, confirm=False, action="")
        if tries < PIN_TRIES:
            return await twiml(notification, CallStep.WRONG, confirm=True, action=pin_url(attempt_id, tries + 1, heard))
        return await twiml(notification, CallStep.LOCKED, confirm=False, action="")

    @router.post(
        "/v1/callbacks/voice",
        response_model=CallbackResult,
        summary="Twilio call status callback (X-Twilio-Signature checked)",
        responses={400: {"description": "Malformed"}, 403: {"description": "Bad signature"}, 404: {}},
    )
    async def voice_status_callback(request: Request) -> CallbackResult:
        params = await signed_form(request)
        call_sid, call_status = params.get("CallSid"), params.get("CallStatus")
        if not call_sid or not call_status or len(call_sid) > MAX_FIELD:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "CallSid and CallStatus are required")
        receipt = call_receipt(call_status)
        if receipt is None:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, f"unknown CallStatus {call_status[:40]!r}")
        now = api.clock()
        async with api.runtime.pool.acquire() as connection:
            attempt = await receipt_attempt(
                connection,
                reference=request.query_params.get("ref"),
                message_sid=call_sid,
                provider=provider.name,
                signer=provider.name,
            )
            if already_known(attempt, receipt.status):
                metrics.CALLBACKS.labels(provider.name, "repeated").inc()
                return CallbackResult(attempt_id=attempt.attempt_id, status=attempt.status)
            async with connection.transaction():
                await api.bookkeeper.apply_receipt(
                    connection,
                    attempt.attempt_id,
                    receipt,
                    now=now,
                    provider=provider.name,
                    provider_message_id=call_sid,
                    detail=f"answered by {params['AnsweredBy']}" if params.get("AnsweredBy") else None,
                )
                current = await store.get_attempt(connection, attempt.attempt_id)
        metrics.CALLBACKS.labels(provider.name, "applied").inc()
        return CallbackResult(attempt_id=attempt.attempt_id, status=current.status if current else receipt.status)

    return router
