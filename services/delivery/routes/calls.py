"""The voice channel's webhooks, each signed by the voice provider (``X-Twilio-Signature``) and checked.

- ``POST /v1/calls/{attempt}/twiml``: the answered call asks what to say. A machine (``AnsweredBy=machine_*``) gets
  the notice as a message; a person gets it with the PIN prompt when it is urgent and a PIN was chosen.
- ``POST /v1/calls/{attempt}/pin?try=N``: the ``<Gather>`` action. The right PIN acknowledges the notice (its
  repeats stop; subscription is told) and says so; a wrong one is asked again, up to 3 tries; nothing keyed in plays
  the notice once more (``heard=2``), then says goodbye.
Call progress (``POST /v1/callbacks/voice``) is a status callback like any channel's (``routes/callbacks``).
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.responses import Response

from services.delivery.channels.voice import VoiceChannel
from services.delivery.deps import ApiContext, SignedForm, signed_twilio_form
from services.delivery.domain import IMMEDIATE_KINDS
from services.delivery.providers.twilio.voice import CallRequest, read_call_request
from services.delivery.rendering import CallStep, TemplateError
from services.delivery.store import agencies, attempts, notifications, subscriptions
from services.delivery.store.attempts import AttemptRow
from services.delivery.store.notifications import NotificationRow
from shared.pin import pin_matches
from shared.vocabulary import Urgency

log = logging.getLogger(__name__)

PIN_TRIES = 3


def voice_router(context: ApiContext, voice: VoiceChannel) -> APIRouter:
    """The TwiML and PIN webhooks of ``voice``'s calls (its status callbacks are in ``routes/callbacks``)."""
    router = APIRouter(tags=["voice"])
    settings = context.settings
    base = settings.public_base_url.rstrip("/")
    signed = Depends(signed_twilio_form(context, lambda _: voice.signers))

    async def call_of(attempt_id: str, call: CallRequest) -> tuple[AttemptRow, NotificationRow]:
        async with context.runtime.pool.acquire() as connection:
            attempt = await attempts.get_attempt(connection, attempt_id)
            notification = (
                await notifications.get_notification(connection, attempt.notification_id) if attempt else None
            )
        if attempt is None or notification is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no call attempt with this reference")
        if attempt.provider_message_id not in (None, call.call_sid):
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "the call does not match the attempt")
        return attempt, notification

    async def twiml(notification: NotificationRow, step: CallStep, *, confirm: bool, action: str) -> Response:
        request = notification.request
        async with context.runtime.pool.acquire() as connection:
            agency = await agencies.get_agency(connection, request.agency_id)
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

    async def asks_for_pin(notification: NotificationRow) -> bool:
        """Urgent custody notices ask for the PIN; a code is urgent only in that it cannot wait."""
        request = notification.request
        if request.urgency is not Urgency.URGENT or request.kind in IMMEDIATE_KINDS or notification.acknowledged_at:
            return False
        async with context.runtime.pool.acquire() as connection:
            return await subscriptions.pin_hash(connection, request.subscription_id, voice.channel) is not None

    @router.post("/v1/calls/{attempt_id}/twiml", summary="TwiML of an answered notice call (signed)")
    async def call_twiml(attempt_id: str, form: SignedForm = signed) -> Response:
        call = read_call_request(form.params)
        _, notification = await call_of(attempt_id, call)
        machine = call.machine
        confirm = await asks_for_pin(notification)
        step = CallStep.MACHINE if machine else CallStep.NOTICE
        return await twiml(notification, step, confirm=confirm, action=pin_url(attempt_id, 1, 1))

    @router.post("/v1/calls/{attempt_id}/pin", summary="The PIN keyed in on a notice call (signed)")
    async def call_pin(
        attempt_id: str,
        form: SignedForm = signed,
        tries: int = Query(default=1, alias="try", ge=1, le=PIN_TRIES),
        heard: int = Query(default=1, ge=1, le=2),
    ) -> Response:
        call = read_call_request(form.params)
        attempt, notification = await call_of(attempt_id, call)
        digits = call.digits
        if not digits:
            step = CallStep.REPEAT if heard == 1 else CallStep.GOODBYE  # the notice once more, then goodbye
            return await twiml(notification, step, confirm=True, action=pin_url(attempt_id, tries, heard + 1))
        subscription_id = notification.request.subscription_id
        async with context.runtime.pool.acquire() as connection:
            pin_hash = await subscriptions.pin_hash(connection, subscription_id, voice.channel)
        if pin_hash is not None and pin_matches(settings.blind_index_key, subscription_id, digits, pin_hash):
            async with context.runtime.pool.acquire() as connection, connection.transaction():
                await context.bookkeeper.acknowledge(
                    connection, attempt.notification_id, now=context.clock(), publish=True
                )
            log.info("notice %s acknowledged by PIN on a call", attempt.notification_id)
            return await twiml(notification, CallStep.ACCEPTED, confirm=False, action="")
        if tries < PIN_TRIES:
            return await twiml(notification, CallStep.WRONG, confirm=True, action=pin_url(attempt_id, tries + 1, heard))
        return await twiml(notification, CallStep.LOCKED, confirm=False, action="")

    return router
