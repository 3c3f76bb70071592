"""Voice calls through Twilio Programmable Voice (or anything speaking its shape, such as the local voice sink).

``POST {base_url}/2010-04-01/Accounts/{sid}/Calls.json``, form-encoded, HTTP basic auth: ``To``, ``From``, the
call's ``Twiml``, ``StatusCallback`` with ``StatusCallbackEvent`` initiated, ringing, answered and completed, and
``MachineDetection=Enable`` (the completed callback then says ``AnsweredBy``). Like Messages, Calls has no
idempotency key: a second POST rings the victim a second time. A taker of a stranded attempt asks first: the call's
SID from a status callback, else :meth:`TwilioVoiceProvider.placed_since`, the calls to that number from ours created
since the attempt began (``GET Calls.json?To=…&From=…``, newest first, paged), which the caller compares with the
SIDs it already knows. A call's TwiML is not in its resource, so the list cannot be matched on content.
Never logs the phone number or what the call says.

Call statuses map onto ours (:func:`call_receipt`): queued, initiated and ringing are *sending*; in-progress (the
call was answered) is *sent*; completed is *delivered* but *unconfirmed* (a PIN entered acknowledges the notice
before the call ends, which stops the repeats); busy, no-answer and failed are temporary failures, tried again on the
voice pattern; canceled is a technical failure.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from services.delivery.domain import Receipt
from services.delivery.providers.base import PermanentProviderError, ProviderReceipt, TemporaryProviderError
from services.delivery.providers.failover import AMBIGUOUS_ERROR_CODE
from shared.events import DeliveryStatus

logger = logging.getLogger(__name__)

STATUS_CALLBACK_EVENTS = ("initiated", "ringing", "answered", "completed")
LIST_PAGE_SIZE = 50
LIST_MAX_PAGES = 20
CLOCK_SKEW = timedelta(minutes=2)
# Twilio answers these codes for conditions that may clear by themselves (rate limits, queue full).
TEMPORARY_TWILIO_CODES: frozenset[str] = frozenset({"20429", "20003", "21215"})
NO_ANSWER_STATUSES = frozenset({"busy", "no-answer", "failed"})


@dataclass(frozen=True)
class OutboundCall:
    """A call to place: its TwiML fetched from ``url`` (which learns ``AnsweredBy`` first), else ``twiml`` inline."""

    to: str
    twiml: str
    url: str | None
    reference: str
    status_callback_url: str | None = None


def is_machine(answered_by: str | None) -> bool:
    """Twilio's ``AnsweredBy``: ``machine_start``, ``machine_end_beep`` … or ``fax`` are no person to ask a PIN."""
    return answered_by is not None and (answered_by.startswith("machine_") or answered_by == "fax")


def call_receipt(call_status: str) -> Receipt | None:
    """What a Twilio ``CallStatus`` means for the attempt; None for a status we do not know."""
    status = call_status.strip().lower()
    match status:
        case "queued" | "initiated" | "ringing":
            return Receipt(DeliveryStatus.SENDING)
        case "in-progress":
            return Receipt(DeliveryStatus.SENT)
        case "completed":
            return Receipt(DeliveryStatus.DELIVERED, unconfirmed=True)
        case "busy" | "no-answer" | "failed":
            return Receipt(DeliveryStatus.TEMPORARY_FAILURE, status)
        case "canceled":
            return Receipt(DeliveryStatus.TECHNICAL_FAILURE, status)
        case _:
            return None


def _document(response: httpx.Response) -> dict[str, Any] | None:
    try:
        document: Any = response.json()
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _created_at(call: dict[str, Any]) -> datetime | None:
    value = call.get("date_created")
    if not isinstance(value, str):
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


class TwilioVoiceProvider:
    def __init__(
        self,
        *,
        name: str,
        account_sid: str,
        auth_token: str,
        from_number: str,
        base_url: str = "https://api.twilio.com",
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.name = name
        self.from_number = from_number
        self._base_url = base_url.rstrip("/")
        self._calls_url = f"{self._base_url}/2010-04-01/Accounts/{account_sid}/Calls"
        self._auth = (account_sid, auth_token)
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._timeout = timeout

    async def call(self, call: OutboundCall) -> ProviderReceipt:
        form: dict[str, str | list[str]] = {"To": call.to, "From": self.from_number, "MachineDetection": "Enable"}
        form |= {"Url": call.url, "Method": "POST"} if call.url else {"Twiml": call.twiml}
        if call.status_callback_url:
            form |= {
                "StatusCallback": call.status_callback_url,
                "StatusCallbackMethod": "POST",
                "StatusCallbackEvent": list(STATUS_CALLBACK_EVENTS),
            }
        try:
            response = await self._client.post(
                f"{self._calls_url}.json", data=form, auth=self._auth, timeout=self._timeout
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            raise TemporaryProviderError(f"{self.name}: connection failed ({type(error).__name__})") from None
        except httpx.HTTPError as error:
            raise TemporaryProviderError(
                f"{self.name}: no answer ({type(error).__name__})", code=AMBIGUOUS_ERROR_CODE
            ) from None
        document = _document(response)
        if response.status_code in (200, 201):
            if document is None or not isinstance(document.get("sid"), str):
                raise TemporaryProviderError(
                    f"{self.name}: call accepted, answer unreadable", code=AMBIGUOUS_ERROR_CODE
                )
            status = document.get("status")
            return ProviderReceipt(self.name, document["sid"], status if isinstance(status, str) else "queued")
        code = str(document["code"]) if document and document.get("code") is not None else None
        message = document.get("message") if document else None
        reason = f"{self.name}: HTTP {response.status_code}" + (f": {message}" if isinstance(message, str) else "")
        logger.info(
            "voice provider refused a call",
            extra={"provider": self.name, "http_status": response.status_code, "error_code": code},
        )
        if response.status_code in (401, 403, 429) or response.status_code >= 500 or code in TEMPORARY_TWILIO_CODES:
            raise TemporaryProviderError(reason, code=code or str(response.status_code))
        raise PermanentProviderError(reason, code=code or str(response.status_code))

    async def fetch_status(self, provider_message_id: str) -> str | None:
        """The call's current status (``GET Calls/{sid}.json``); None if unknown or unreachable."""
        try:
            response = await self._client.get(
                f"{self._calls_url}/{provider_message_id}.json", auth=self._auth, timeout=self._timeout
            )
        except httpx.HTTPError as error:
            logger.warning("call status lookup failed", extra={"provider": self.name, "error": type(error).__name__})
            return None
        document = _document(response) if response.status_code == 200 else None
        status = document.get("status") if document else None
        return status if isinstance(status, str) else None

    async def placed_since(self, to: str, since: datetime) -> list[ProviderReceipt]:
        """Every call to ``to`` from our number created at or after ``since``; raises when Twilio cannot tell now."""
        url: str | None = f"{self._calls_url}.json"
        params: dict[str, str] | None = {"To": to, "From": self.from_number, "PageSize": str(LIST_PAGE_SIZE)}
        oldest_wanted = since - CLOCK_SKEW
        found: list[ProviderReceipt] = []
        for _ in range(LIST_MAX_PAGES):
            if url is None:
                return found
            page = await self._list_page(url, params)
            calls = page.get("calls")
            if not isinstance(calls, list):
                raise TemporaryProviderError(f"{self.name}: unreadable call list", code=AMBIGUOUS_ERROR_CODE)
            for call in calls:
                if not isinstance(call, dict) or not isinstance(call.get("sid"), str):
                    continue
                created = _created_at(call)
                if created is None or created >= oldest_wanted:
                    status = call.get("status")
                    found.append(
                        ProviderReceipt(self.name, call["sid"], status if isinstance(status, str) else "queued")
                    )
            if not calls or any((created := _created_at(c)) is not None and created < oldest_wanted for c in calls):
                return found  # newest first: the rest is older than the attempt
            next_page = page.get("next_page_uri")
            url = f"{self._base_url}{next_page}" if isinstance(next_page, str) and next_page else None
            params = None
        raise TemporaryProviderError(f"{self.name}: too many calls to search", code=AMBIGUOUS_ERROR_CODE)

    async def _list_page(self, url: str, params: dict[str, str] | None) -> dict[str, Any]:
        try:
            response = await self._client.get(url, params=params, auth=self._auth, timeout=self._timeout)
        except httpx.HTTPError as error:
            raise TemporaryProviderError(
                f"{self.name}: call list unreachable ({type(error).__name__})", code=AMBIGUOUS_ERROR_CODE
            ) from None
        document = _document(response) if response.status_code == 200 else None
        if document is None:
            raise TemporaryProviderError(
                f"{self.name}: call list HTTP {response.status_code}", code=AMBIGUOUS_ERROR_CODE
            )
        return document

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()
