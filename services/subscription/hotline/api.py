"""The hotline's webhooks: Twilio calls ``POST /v1/hotline/voice`` when someone dials our number, then each
``<Gather>``'s action, ``POST /v1/hotline/voice/step`` with the call's state in its signed query string. Both are
signed by Twilio (``X-Twilio-Signature``, 403 otherwise) and answer TwiML."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from services.subscription.deps import TwilioForm
from services.subscription.domain.errors import InvalidRequestError
from services.subscription.flows.context import Context
from services.subscription.hotline.domain import BadStateError, CallState, Reply, decode_state, encode_state
from services.subscription.hotline.flows import Hotline
from services.subscription.hotline.settings import HotlineSettings
from services.subscription.hotline.speech import Speech
from services.subscription.hotline.twiml import render
from shared.vocabulary import Language

PREFIX = "/v1/hotline"
INCOMING_PATH = f"{PREFIX}/voice"
STEP_PATH = f"{PREFIX}/voice/step"
MAX_CALL_SID = 64
TWIML: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/xml": {}}, "description": "TwiML"},
    400: {},
    403: {},
}


def _call_sid(params: dict[str, str]) -> str:
    call_sid = params.get("CallSid", "")
    if not call_sid or len(call_sid) > MAX_CALL_SID or not call_sid.isalnum():
        raise InvalidRequestError("CallSid is required")
    return call_sid


def create_hotline_router(context: Context, settings: HotlineSettings | None = None) -> APIRouter:
    hotline = Hotline(context, settings or HotlineSettings())
    speech = Speech(context.settings.service_display_name)
    base_url = context.settings.public_base_url.rstrip("/")
    secret = context.settings.token_secret
    router = APIRouter(tags=["hotline"])

    def twiml(reply: Reply, language: Language, call_sid: str) -> Response:
        def action_url(state: CallState) -> str:
            return f"{base_url}{STEP_PATH}?{encode_state(state, secret, call_sid)}"

        return Response(render(reply, language, speech, action_url), media_type="application/xml")

    @router.post(INCOMING_PATH, response_class=Response, responses=TWIML, summary="Twilio inbound call: the hotline")
    async def incoming(params: TwilioForm) -> Response:
        call_sid = _call_sid(params)
        reply = await hotline.incoming(params.get("From", ""))
        return twiml(reply, Language.ENGLISH, call_sid)

    @router.post(STEP_PATH, response_class=Response, responses=TWIML, summary="The keys pressed on a hotline call")
    async def step(request: Request, params: TwilioForm) -> Response:
        call_sid = _call_sid(params)
        try:
            state = decode_state(dict(request.query_params), request.url.query, secret, call_sid)
        except BadStateError as error:
            raise InvalidRequestError(str(error)) from None
        reply = await hotline.answer(state, params.get("Digits", ""), params.get("From", ""), call_sid)
        return twiml(reply, reply.ask.language if reply.ask is not None else state.language, call_sid)

    return router
