"""FastAPI dependencies of the subscription service: its settings, the caller, a manage token, signed webhooks."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, Header, Request

from services.subscription.domain.errors import ForbiddenError
from services.subscription.settings import SubscriptionSettings
from shared.twilio import signature_is_valid

log = logging.getLogger(__name__)


def subscription_settings(request: Request) -> SubscriptionSettings:
    settings = request.app.state.runtime.settings
    assert isinstance(settings, SubscriptionSettings)  # noqa: S101 - the app is built from these settings
    return settings


def client_key(request: Request) -> str:
    """The caller's address as the proxy-headers middleware resolved it: X-Forwarded-For is believed only from
    ``SUBSCRIPTION_TRUSTED_PROXIES``."""
    return request.client.host if request.client else "unknown"


def bearer_token(authorization: Annotated[str | None, Header()] = None) -> str | None:
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


Settings = Annotated[SubscriptionSettings, Depends(subscription_settings)]
ClientAddress = Annotated[str, Depends(client_key)]
ManageToken = Annotated[str | None, Depends(bearer_token)]


def public_url(request: Request, settings: SubscriptionSettings) -> str:
    """The address Twilio called (and signed): our public base URL, the path and the query string."""
    query = f"?{request.url.query}" if request.url.query else ""
    return settings.public_base_url.rstrip("/") + request.url.path + query


async def signed_twilio_form(
    request: Request, settings: Settings, x_twilio_signature: Annotated[str | None, Header()] = None
) -> dict[str, str]:
    """The POST parameters of a Twilio webhook, once its ``X-Twilio-Signature`` proves Twilio sent them; 403
    otherwise (a missing signature is never valid)."""
    form = await request.form()
    params = {name: value for name, value in form.items() if isinstance(value, str)}
    if not signature_is_valid(settings.twilio_auth_token, public_url(request, settings), params, x_twilio_signature):
        log.warning("webhook with a missing or wrong Twilio signature refused", extra={"path": request.url.path})
        raise ForbiddenError("invalid Twilio signature")
    return params


TwilioForm = Annotated[dict[str, str], Depends(signed_twilio_form)]
"""Use as the type of a webhook's parameter: the route runs only for a request Twilio signed."""
