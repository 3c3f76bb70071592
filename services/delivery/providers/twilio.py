"""SMS through the Twilio Messages API (or anything speaking its shape, such as the local SMS sink).

``POST {base_url}/2010-04-01/Accounts/{sid}/Messages.json``, form-encoded, HTTP basic auth. Our attempt reference
travels as ``I-Twilio-Idempotency-Token`` so a retried hand-off after a crash is recognised as the same message.
Never logs the phone number or the body.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from services.delivery.providers.base import (
    OutboundSms,
    PermanentProviderError,
    ProviderReceipt,
    TemporaryProviderError,
)
from services.delivery.providers.failover import AMBIGUOUS_ERROR_CODE

logger = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
# Twilio answers these 4xx codes for conditions that may clear by themselves: worth retrying.
TEMPORARY_TWILIO_CODES: frozenset[str] = frozenset({"20429", "30001", "14107"})


def _error_code(response: httpx.Response) -> str | None:
    """Twilio's JSON error shape is ``{"code": 21610, "message": ..., "status": 400}``."""
    try:
        document = response.json()
    except ValueError:
        return None
    if isinstance(document, dict) and document.get("code") is not None:
        return str(document["code"])
    return None


def _error_message(response: httpx.Response) -> str:
    try:
        document = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if isinstance(document, dict) and isinstance(document.get("message"), str):
        return f"HTTP {response.status_code}: {document['message']}"
    return f"HTTP {response.status_code}"


class TwilioSmsProvider:
    """One Twilio account (or a Twilio-shaped sink); create one per configured SMS provider."""

    def __init__(
        self,
        *,
        name: str,
        account_sid: str,
        auth_token: str,
        from_number: str,
        base_url: str = "https://api.twilio.com",
        timeout: float = 10.0,
        max_connections: int = 100,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        """``max_connections``: as many as sends run at once, all kept alive (no reconnect per message)."""
        self.name = name
        self.account_sid = account_sid
        self.from_number = from_number
        self._auth = httpx.BasicAuth(account_sid, auth_token)
        self._messages_url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages"
        self._owns_client = client is None
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._client = client or httpx.AsyncClient(timeout=timeout, limits=limits)
        self._timeout = timeout

    async def send(self, message: OutboundSms) -> ProviderReceipt:
        form = {"To": message.to, "From": self.from_number, "Body": message.body}
        if message.status_callback_url:
            form["StatusCallback"] = message.status_callback_url
        try:
            response = await self._client.post(
                f"{self._messages_url}.json",
                data=form,
                auth=self._auth,
                headers={IDEMPOTENCY_HEADER: message.reference},
                timeout=self._timeout,
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            # The request never left: safe to try another provider at once.
            raise TemporaryProviderError(f"{self.name}: connection failed ({type(error).__name__})") from None
        except httpx.HTTPError as error:
            # Sent, but no answer: the provider may have taken the message.
            raise TemporaryProviderError(
                f"{self.name}: no answer ({type(error).__name__})", code=AMBIGUOUS_ERROR_CODE
            ) from None
        if response.status_code in (200, 201):
            return self._receipt(response)
        code = _error_code(response)
        reason = f"{self.name}: {_error_message(response)}"
        logger.info(
            "sms provider refused a message",
            extra={"provider": self.name, "http_status": response.status_code, "error_code": code},
        )
        if response.status_code == 429 or response.status_code >= 500 or code in TEMPORARY_TWILIO_CODES:
            raise TemporaryProviderError(reason, code=code)
        if response.status_code in (401, 403):
            # Our credentials are wrong: no number is at fault, and fixing the configuration makes a retry succeed.
            raise TemporaryProviderError(reason, code=code or str(response.status_code))
        raise PermanentProviderError(reason, code=code or str(response.status_code))

    def _receipt(self, response: httpx.Response) -> ProviderReceipt:
        try:
            document: Any = response.json()
        except ValueError:
            document = None
        if not isinstance(document, dict) or not isinstance(document.get("sid"), str):
            # Accepted but unreadable: we cannot tie receipts to it, yet it may be sent; retrying risks a duplicate,
            # which the idempotency token guards against.
            raise TemporaryProviderError(f"{self.name}: accepted with an unreadable answer")
        status = document.get("status")
        return ProviderReceipt(
            provider=self.name,
            provider_message_id=document["sid"],
            status=status if isinstance(status, str) else "queued",
        )

    async def fetch_status(self, provider_message_id: str) -> str | None:
        """The message's current Twilio status, for reconciling missed callbacks; None if unknown or unreachable."""
        try:
            response = await self._client.get(
                f"{self._messages_url}/{provider_message_id}.json", auth=self._auth, timeout=self._timeout
            )
        except httpx.HTTPError as error:
            logger.warning("sms status lookup failed", extra={"provider": self.name, "error": type(error).__name__})
            return None
        if response.status_code != 200:
            return None
        try:
            document: Any = response.json()
        except ValueError:
            return None
        status = document.get("status") if isinstance(document, dict) else None
        return status if isinstance(status, str) else None

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()
