"""SMS through the Twilio Messages API (or anything speaking its shape, such as the local SMS sink).

``POST {base_url}/2010-04-01/Accounts/{sid}/Messages.json``, form-encoded, HTTP basic auth. Twilio has no
idempotency key for this call: every POST that reaches it is a new message. So an attempt whose call may have gone
through (a crash before our bookkeeping, a timeout) is never simply sent again; :meth:`TwilioSmsProvider.find_sent`
asks Twilio first, through its message list: ``GET Messages.json?To=…&From=…`` (newest first, paged by
``next_page_uri``), matched on the body's fingerprint and read back until messages older than the attempt. The list's
``DateSent`` filters are not used: they compare GMT *dates* of sending, and a message still queued has no sent date.
Never logs the phone number or the body.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from services.delivery.providers.base import (
    OutboundSms,
    PermanentProviderError,
    ProviderReceipt,
    TemporaryProviderError,
    body_fingerprint,
)
from services.delivery.providers.failover import AMBIGUOUS_ERROR_CODE

logger = logging.getLogger(__name__)

LIST_PAGE_SIZE = 50
LIST_MAX_PAGES = 20
CLOCK_SKEW = timedelta(minutes=2)
"""Twilio's ``date_created`` and our clock may disagree a little: the search reaches back this much further."""
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


def _created_at(message: dict[str, Any]) -> datetime | None:
    """Twilio's ``date_created`` (RFC 2822, GMT), or None if absent or unreadable."""
    value = message.get("date_created")
    if not isinstance(value, str):
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


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
        self._base_url = base_url.rstrip("/")
        self._messages_url = f"{self._base_url}/2010-04-01/Accounts/{account_sid}/Messages"
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
            # Accepted but unreadable: it may be sent, so only asking Twilio later may decide whether to send again.
            raise TemporaryProviderError(f"{self.name}: accepted with an unreadable answer", code=AMBIGUOUS_ERROR_CODE)
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

    async def find_sent(self, to: str, since: datetime, fingerprint: str) -> ProviderReceipt | None:
        """Our message to ``to`` with this body fingerprint, created at or after ``since``, if Twilio has it."""
        url: str | None = f"{self._messages_url}.json"
        params: dict[str, str] | None = {"To": to, "From": self.from_number, "PageSize": str(LIST_PAGE_SIZE)}
        oldest_wanted = since - CLOCK_SKEW
        for _ in range(LIST_MAX_PAGES):
            if url is None:
                return None
            page = await self._list_page(url, params)
            messages = page.get("messages")
            if not isinstance(messages, list):
                raise TemporaryProviderError(f"{self.name}: unreadable message list", code=AMBIGUOUS_ERROR_CODE)
            for found in messages:
                if not isinstance(found, dict) or not isinstance(found.get("sid"), str):
                    continue
                body = found.get("body")
                if isinstance(body, str) and body_fingerprint(body) == fingerprint:
                    status = found.get("status")
                    return ProviderReceipt(
                        provider=self.name,
                        provider_message_id=found["sid"],
                        status=status if isinstance(status, str) else "queued",
                    )
            created = [_created_at(found) for found in messages if isinstance(found, dict)]
            if not messages or any(moment is not None and moment < oldest_wanted for moment in created):
                return None  # newest first: the rest is older than the attempt
            next_page = page.get("next_page_uri")
            url = f"{self._base_url}{next_page}" if isinstance(next_page, str) and next_page else None
            params = None
        raise TemporaryProviderError(f"{self.name}: too many messages to search", code=AMBIGUOUS_ERROR_CODE)

    async def _list_page(self, url: str, params: dict[str, str] | None) -> dict[str, Any]:
        try:
            response = await self._client.get(url, params=params, auth=self._auth, timeout=self._timeout)
        except httpx.HTTPError as error:
            raise TemporaryProviderError(
                f"{self.name}: message list unreachable ({type(error).__name__})", code=AMBIGUOUS_ERROR_CODE
            ) from None
        if response.status_code != 200:
            raise TemporaryProviderError(
                f"{self.name}: message list {_error_message(response)}", code=AMBIGUOUS_ERROR_CODE
            )
        try:
            document: Any = response.json()
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise TemporaryProviderError(f"{self.name}: unreadable message list", code=AMBIGUOUS_ERROR_CODE)
        return document

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()
