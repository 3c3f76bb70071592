"""The interface every SMS or email provider client implements; a new provider is one new file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class OutboundSms:
    to: str
    body: str
    reference: str = field(metadata={"doc": "Our attempt id: the idempotency key and the status-callback ref."})
    status_callback_url: str | None = None


@dataclass(frozen=True)
class OutboundEmail:
    to: str
    subject: str
    text_body: str
    html_body: str
    reference: str
    unsubscribe_url: str | None = None
    unsubscribe_mailto: str | None = None


@dataclass(frozen=True)
class ProviderReceipt:
    """The provider took the message: ``provider_message_id`` ties later status callbacks to the attempt."""

    provider: str
    provider_message_id: str
    status: str = "sent"


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

    async def close(self) -> None: ...


class EmailProvider(Protocol):
    name: str

    async def send(self, message: OutboundEmail) -> ProviderReceipt: ...

    async def close(self) -> None: ...
