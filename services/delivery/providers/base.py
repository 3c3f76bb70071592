"""The interface every SMS or email provider client implements; a new provider is one new file."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from services.delivery.domain import Receipt


def body_fingerprint(body: str) -> str:
    """What an attempt records of its text before the provider call: enough to recognise the message, not to read it."""
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True)
class OutboundSms:
    to: str
    body: str
    reference: str = field(
        metadata={"doc": "Our attempt id: the status-callback ref, and the idempotency key of a provider with one."}
    )
    status_callback_url: str | None = None


@dataclass(frozen=True)
class OutboundEmail:
    to: str
    subject: str
    text_body: str
    html_body: str
    reference: str
    message_id: str = field(metadata={"doc": "The Message-ID header, recorded on the attempt before SMTP begins."})
    unsubscribe_url: str | None = None
    unsubscribe_mailto: str | None = None


@dataclass(frozen=True)
class ProviderReceipt:
    """The provider took the message: ``provider_message_id`` ties later status callbacks to the attempt."""

    provider: str
    provider_message_id: str
    status: str = "sent"


@dataclass(frozen=True)
class StatusReport:
    """A provider's status callback, read: which message, what its status means, what the history should say."""

    provider_message_id: str
    receipt: Receipt
    detail: str | None = None


class CallbackError(ValueError):
    """A status callback without the fields it must carry, or with a status we do not know (HTTP 400)."""


AMBIGUOUS_ERROR_CODE = "timeout"
"""Code of a :class:`TemporaryProviderError` raised when the request may have reached the provider."""


class ProviderError(Exception):
    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class TemporaryProviderError(ProviderError):
    """Worth retrying (timeouts, 429, 5xx); may also trigger failover to another provider."""


class PermanentProviderError(ProviderError):
    """Retrying cannot help (invalid number, opted out: code 21610, hard bounce)."""


class SmsProvider(Protocol):
    name: str

    async def send(self, message: OutboundSms) -> ProviderReceipt: ...

    async def find_sent(self, to: str, since: datetime, fingerprint: str) -> ProviderReceipt | None:
        """The message to ``to`` with this body fingerprint the provider took since ``since``, or None.

        How an attempt taken over after a crash learns whether its provider call went through. Raises
        :class:`TemporaryProviderError` when the provider cannot tell now (the caller must not send then).
        """
        ...

    async def close(self) -> None: ...


class EmailProvider(Protocol):
    name: str

    def message_id(self, reference: str) -> str:
        """The Message-ID of the attempt with this reference (the same for a resend of that attempt)."""
        ...

    async def send(self, message: OutboundEmail) -> ProviderReceipt: ...

    async def close(self) -> None: ...
