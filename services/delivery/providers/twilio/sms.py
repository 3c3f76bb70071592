"""SMS through the Twilio Messages API (or anything speaking its shape, such as the local SMS sink).

``POST Messages.json`` with ``To``, ``From``, ``Body`` and ``StatusCallback``. Twilio has no idempotency key for
this call: every POST that reaches it is a new message. So an attempt whose call may have gone through (a crash
before our bookkeeping, a timeout) is never simply sent again; :meth:`TwilioSmsProvider.find_sent` asks Twilio
first, through its message list (``GET Messages.json?To=…&From=…``), matched on the body's fingerprint.

Message statuses and error codes map onto GOV.UK Notify's statuses (:func:`message_receipt`,
:func:`failure_receipt`). Never logs the phone number or the body.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from services.delivery.domain import Receipt
from services.delivery.providers.base import (
    CallbackError,
    OutboundSms,
    ProviderReceipt,
    StatusReport,
    body_fingerprint,
)
from services.delivery.providers.twilio.rest import TwilioRest
from shared.events import DeliveryStatus

MESSAGES = "Messages"
MAX_FIELD = 256
TEMPORARY_CODES: frozenset[str] = frozenset({"20429", "30001", "14107"})
"""Codes Twilio answers a send with for conditions that may clear by themselves: worth retrying."""
PERMANENT_CODES: frozenset[str] = frozenset(
    {"21211", "21408", "21610", "21612", "21614", "30004", "30005", "30006", "30007"}
)
"""Error codes after which retrying the same number cannot help."""
OPTED_OUT = "21610"
"""The number replied STOP to us: it must never be used again."""


def failure_receipt(code: str | None, *, permanent: bool) -> Receipt:
    """A refused send or an undelivered message: an opted-out number is disabled; else permanent or temporary."""
    if code == OPTED_OUT:
        return Receipt(DeliveryStatus.PERMANENT_FAILURE, code, "opted_out")
    if permanent:
        return Receipt(DeliveryStatus.PERMANENT_FAILURE, code)
    return Receipt(DeliveryStatus.TEMPORARY_FAILURE, code)


def message_receipt(message_status: str, error_code: str | None) -> Receipt | None:
    """Map a Twilio ``MessageStatus`` (+ ``ErrorCode``) to GOV.UK Notify's statuses; None for unknown ones."""
    code = error_code.strip() if error_code and error_code.strip() not in {"", "0"} else None
    match message_status.strip().lower():
        case "accepted" | "scheduled" | "queued" | "sending":
            return Receipt(DeliveryStatus.SENDING)
        case "sent":
            return Receipt(DeliveryStatus.SENT)
        case "delivered" | "read":
            return Receipt(DeliveryStatus.DELIVERED)
        case "undelivered" | "failed":
            return failure_receipt(code, permanent=code in PERMANENT_CODES)
        case "canceled":
            return Receipt(DeliveryStatus.TECHNICAL_FAILURE, code)
        case _:
            return None


def read_status_callback(params: Mapping[str, str]) -> StatusReport:
    """A Messages status callback's form (``MessageSid``, ``MessageStatus``, ``ErrorCode``), read."""
    message_sid = params.get("MessageSid") or params.get("SmsSid")
    message_status = params.get("MessageStatus") or params.get("SmsStatus")
    if not message_sid or not message_status or len(message_sid) > MAX_FIELD:
        raise CallbackError("MessageSid and MessageStatus are required")
    receipt = message_receipt(message_status, params.get("ErrorCode"))
    if receipt is None:
        raise CallbackError(f"unknown MessageStatus {message_status[:40]!r}")
    return StatusReport(provider_message_id=message_sid, receipt=receipt)


def _status(document: dict[str, Any]) -> str:
    status = document.get("status")
    return status if isinstance(status, str) else "queued"


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
    ) -> None:
        self.name = name
        self.account_sid = account_sid
        self.from_number = from_number
        self._rest = TwilioRest(
            name=name,
            account_sid=account_sid,
            auth_token=auth_token,
            base_url=base_url,
            timeout=timeout,
            max_connections=max_connections,
        )

    async def send(self, message: OutboundSms) -> ProviderReceipt:
        form = {"To": message.to, "From": self.from_number, "Body": message.body}
        if message.status_callback_url:
            form["StatusCallback"] = message.status_callback_url
        created = await self._rest.create(MESSAGES, form, temporary_codes=TEMPORARY_CODES)
        return ProviderReceipt(provider=self.name, provider_message_id=created["sid"], status=_status(created))

    async def fetch_status(self, provider_message_id: str) -> str | None:
        """The message's current Twilio status, for reconciling missed callbacks; None if unknown or unreachable."""
        return await self._rest.fetch_status(MESSAGES, provider_message_id)

    async def find_sent(self, to: str, since: datetime, fingerprint: str) -> ProviderReceipt | None:
        """Our message to ``to`` with this body fingerprint, created at or after ``since``, if Twilio has it."""
        for found in await self._rest.created_since(MESSAGES, to=to, from_number=self.from_number, since=since):
            body = found.get("body")
            if isinstance(body, str) and body_fingerprint(body) == fingerprint:
                return ProviderReceipt(provider=self.name, provider_message_id=found["sid"], status=_status(found))
        return None

    async def close(self) -> None:
        await self._rest.close()
