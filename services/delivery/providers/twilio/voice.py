"""Voice calls through Twilio Programmable Voice (or anything speaking its shape, such as the local voice sink).

``POST Calls.json`` with ``To``, ``From``, the ``Url`` the answered call fetches its TwiML from (or ``Twiml``),
``StatusCallback`` with ``StatusCallbackEvent`` initiated, ringing, answered and completed, and
``MachineDetection=Enable`` (the TwiML request and the completed callback then say ``AnsweredBy``). Like Messages,
Calls has no idempotency key: a second POST rings the victim a second time. A taker of a stranded attempt asks
first: the call's SID from a status callback, else :meth:`TwilioVoiceProvider.placed_since`, the calls to that
number from ours created since the attempt began, which the caller compares with the SIDs it already knows. A
call's TwiML is not in its resource, so the list cannot be matched on content. Never logs the phone number or what
the call says.

Call statuses map onto ours (:func:`call_receipt`): queued, initiated and ringing are *sending*; in-progress (the
call was answered) is *sent*; completed is *delivered* but *unconfirmed* (a PIN entered acknowledges the notice
before the call ends, which stops the repeats); busy, no-answer and failed are temporary failures, tried again on the
voice pattern; canceled is a technical failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.delivery.domain import Receipt
from services.delivery.providers.base import CallbackError, ProviderReceipt, StatusReport
from services.delivery.providers.twilio.rest import TwilioRest
from shared.events import DeliveryStatus

CALLS = "Calls"
MAX_FIELD = 256
STATUS_CALLBACK_EVENTS = ("initiated", "ringing", "answered", "completed")
TEMPORARY_CODES: frozenset[str] = frozenset({"20429", "20003", "21215"})
"""Codes Twilio answers a call with for conditions that may clear by themselves (rate limits, queue full)."""


@dataclass(frozen=True)
class OutboundCall:
    """A call to place: its TwiML fetched from ``url`` (which learns ``AnsweredBy`` first), else ``twiml`` inline."""

    to: str
    twiml: str
    url: str | None
    reference: str
    status_callback_url: str | None = None


@dataclass(frozen=True)
class CallRequest:
    """What an answered call's webhook (its TwiML request, its ``<Gather>`` action) says of the call."""

    call_sid: str | None
    machine: bool
    digits: str


def read_call_request(params: Mapping[str, str]) -> CallRequest:
    """``CallSid``, ``AnsweredBy`` (a machine?) and the ``Digits`` keyed in, from a call webhook's form."""
    return CallRequest(
        call_sid=params.get("CallSid"),
        machine=is_machine(params.get("AnsweredBy")),
        digits=params.get("Digits", "")[:MAX_FIELD],
    )


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


def failure_receipt(code: str | None, *, permanent: bool) -> Receipt:
    """A refused call: nothing about a number disables it (an opt-out arrives by SMS or the portal)."""
    return Receipt(DeliveryStatus.PERMANENT_FAILURE if permanent else DeliveryStatus.TEMPORARY_FAILURE, code)


def read_status_callback(params: Mapping[str, str]) -> StatusReport:
    """A call status callback's form (``CallSid``, ``CallStatus``, ``AnsweredBy``), read."""
    call_sid, call_status = params.get("CallSid"), params.get("CallStatus")
    if not call_sid or not call_status or len(call_sid) > MAX_FIELD:
        raise CallbackError("CallSid and CallStatus are required")
    receipt = call_receipt(call_status)
    if receipt is None:
        raise CallbackError(f"unknown CallStatus {call_status[:40]!r}")
    answered_by = params.get("AnsweredBy")
    return StatusReport(
        provider_message_id=call_sid, receipt=receipt, detail=f"answered by {answered_by}" if answered_by else None
    )


def _receipt(name: str, document: dict[str, Any]) -> ProviderReceipt:
    status = document.get("status")
    return ProviderReceipt(name, document["sid"], status if isinstance(status, str) else "queued")


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
    ) -> None:
        self.name = name
        self.from_number = from_number
        self._rest = TwilioRest(
            name=name, account_sid=account_sid, auth_token=auth_token, base_url=base_url, timeout=timeout
        )

    async def call(self, call: OutboundCall) -> ProviderReceipt:
        form: dict[str, str | list[str]] = {"To": call.to, "From": self.from_number, "MachineDetection": "Enable"}
        form |= {"Url": call.url, "Method": "POST"} if call.url else {"Twiml": call.twiml}
        if call.status_callback_url:
            form |= {
                "StatusCallback": call.status_callback_url,
                "StatusCallbackMethod": "POST",
                "StatusCallbackEvent": list(STATUS_CALLBACK_EVENTS),
            }
        return _receipt(self.name, await self._rest.create(CALLS, form, temporary_codes=TEMPORARY_CODES))

    async def fetch_status(self, provider_message_id: str) -> str | None:
        """The call's current status (``GET Calls/{sid}.json``); None if unknown or unreachable."""
        return await self._rest.fetch_status(CALLS, provider_message_id)

    async def placed_since(self, to: str, since: datetime) -> list[ProviderReceipt]:
        """Every call to ``to`` from our number created at or after ``since``; raises when Twilio cannot tell now."""
        calls = await self._rest.created_since(CALLS, to=to, from_number=self.from_number, since=since)
        return [_receipt(self.name, call) for call in calls]

    async def close(self) -> None:
        await self._rest.close()
