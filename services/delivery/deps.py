"""FastAPI dependencies of delivery's HTTP API: what every route shares, the operator's bearer token, and the one
check of a signed Twilio webhook (``X-Twilio-Signature``, through ``shared.twilio``)."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.delivery import metrics
from services.delivery.channels.base import WebhookSigners
from services.delivery.channels.registry import Channels
from services.delivery.dispatcher import Clock
from services.delivery.flows.bookkeeper import Bookkeeper
from services.delivery.flows.group_commit import GroupCommit
from services.delivery.links import AcknowledgementTokens
from services.delivery.rendering import NoticeRenderer
from services.delivery.settings import DeliverySettings
from shared.crypto import ContactCipher
from shared.runtime import ServiceRuntime
from shared.twilio import signature_is_valid

log = logging.getLogger(__name__)

MAX_FIELD = 256
OPERATOR_BEARER = HTTPBearer(auto_error=False)


@dataclass(frozen=True)
class ApiContext:
    settings: DeliverySettings
    runtime: ServiceRuntime
    bookkeeper: Bookkeeper
    group_commit: GroupCommit
    tokens: AcknowledgementTokens
    clock: Clock
    channels: Channels
    renderer: NoticeRenderer
    cipher: ContactCipher


@dataclass(frozen=True)
class SignedForm:
    """A webhook's form whose signature checked out, and the provider whose auth token signed it."""

    params: dict[str, str]
    signer: str
    label: str


SignersOf = Callable[[Request], WebhookSigners | None]


def signed_twilio_form(context: ApiContext, signers_of: SignersOf) -> Callable[[Request], Awaitable[SignedForm]]:
    """A dependency: the request's form, signed by one of the providers ``signers_of`` allows for it.

    404 when nobody may post there, 400 for a body that is not a plain form, 403 for a bad or missing signature.
    """
    base = context.settings.public_base_url.rstrip("/")

    async def signed_form(request: Request) -> SignedForm:
        signers = signers_of(request)
        if signers is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no provider posts here")
        try:
            form = await request.form()
        except Exception as error:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "body is not a form") from error
        params = {key: value for key, value in form.items() if isinstance(value, str)}
        if len(params) != len(form):
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "file uploads are not accepted")
        url = base + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        signature = request.headers.get("X-Twilio-Signature")
        signer = next(
            (name for name, token in signers.tokens.items() if signature_is_valid(token, url, params, signature)),
            None,
        )
        if signer is None:
            metrics.CALLBACKS.labels(signers.label, "forged").inc()
            log.warning("refused a webhook with a bad signature on %s", signers.label)
            raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid X-Twilio-Signature")
        return SignedForm(params=params, signer=signer, label=signers.label)

    return signed_form


def operator(context: ApiContext) -> Callable[[HTTPAuthorizationCredentials | None], None]:
    """A dependency: the operators' bearer token (the ops dashboard's), or 401."""

    def check(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(OPERATOR_BEARER)]) -> None:
        given = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(given.encode(), context.settings.operator_token.encode()):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "operator bearer token required", headers={"WWW-Authenticate": "Bearer"}
            )

    return check
