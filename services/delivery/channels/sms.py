"""The SMS channel: Twilio-shaped providers in failover order, each paced at its rate across every replica.

A stranded attempt is looked for by the message SID a callback or our bookkeeping recorded, else in the providers'
message lists by the body's fingerprint. Receipts come as signed status callbacks to ``/v1/callbacks/sms/{provider}``
(``{provider}`` is one provider's name, or the failover group's when several share the traffic).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import ClassVar
from urllib.parse import quote

import asyncpg

from services.delivery.channels.base import CallingMarks, DeliveryChannel, KnownMessages, NoticeToSend, WebhookSigners
from services.delivery.domain import FINAL_STATUSES, Receipt, RepeatPatterns
from services.delivery.providers.base import OutboundSms, ProviderReceipt, StatusReport, body_fingerprint
from services.delivery.providers.failover import FailoverSmsProvider
from services.delivery.providers.twilio.sms import (
    TwilioSmsProvider,
    failure_receipt,
    message_receipt,
    read_status_callback,
)
from services.delivery.rendering import NoticeRenderer
from services.delivery.sendrate import SharedSendRate
from services.delivery.settings import FAILOVER_ROUTE, DeliverySettings
from services.delivery.store.attempts import AttemptRow
from shared.vocabulary import Channel, normalise_identifier


class SmsChannel(DeliveryChannel[OutboundSms]):
    channel: ClassVar[Channel] = Channel.SMS
    reconciles_receipts: ClassVar[bool] = True
    callback_path: ClassVar[str | None] = "/sms/{provider}"

    def __init__(
        self,
        *,
        providers: list[TwilioSmsProvider],
        tokens: Mapping[str, str],
        rate_limiters: Mapping[str, SharedSendRate],
        renderer: NoticeRenderer,
        public_base_url: str,
        repeats: RepeatPatterns,
    ) -> None:
        """``providers`` primary first; ``tokens``: each one's auth token, which signs its status callbacks."""
        super().__init__(repeats)
        route = providers[0].name if len(providers) == 1 else FAILOVER_ROUTE
        self.failover = FailoverSmsProvider(providers, name=route, rate_limiters=rate_limiters)
        self._providers = {provider.name: provider for provider in providers}
        self._tokens = dict(tokens)
        self._renderer = renderer
        self._base_url = public_base_url.rstrip("/")

    @classmethod
    def from_settings(
        cls, settings: DeliverySettings, pool: Callable[[], asyncpg.Pool], renderer: NoticeRenderer
    ) -> SmsChannel:
        providers = [
            TwilioSmsProvider(
                name=p.name,
                account_sid=p.account_sid,
                auth_token=p.auth_token,
                from_number=p.from_number,
                base_url=p.base_url,
                timeout=p.timeout,
                max_connections=settings.dispatch_concurrency + 10,
            )
            for p in settings.sms_providers
        ]
        return cls(
            providers=providers,
            tokens={p.name: p.auth_token for p in settings.sms_providers},
            rate_limiters={
                p.name: SharedSendRate(pool, f"sms:{p.name}", p.rate_per_second) for p in settings.sms_providers
            },
            renderer=renderer,
            public_base_url=settings.public_base_url,
            repeats=settings.repeats(),
        )

    @property
    def route(self) -> str:
        """The name in the callback URLs we hand out: one provider's, or the failover group's."""
        return self.failover.name

    def normalise_contact(self, contact: str) -> str:
        return normalise_identifier(contact)

    def callback_url(self, attempt_id: str) -> str:
        """Where the provider reports; ``ref`` ties even a receipt that beats our bookkeeping to its attempt."""
        return f"{self._base_url}/v1/callbacks/sms/{quote(self.route, safe='')}?ref={quote(attempt_id, safe='')}"

    def render(self, notice: NoticeToSend) -> OutboundSms:
        sms = self._renderer.render_sms(notice.request, notice.agency, notice.links, secret=notice.secret)
        return OutboundSms(
            to=notice.contact,
            body=sms.body,
            reference=notice.attempt_id,
            status_callback_url=self.callback_url(notice.attempt_id),
        )

    def calling_marks(self, message: OutboundSms) -> CallingMarks:
        return CallingMarks(body_fingerprint=body_fingerprint(message.body))

    async def send(self, message: OutboundSms) -> ProviderReceipt:
        return await self.failover.send(message)

    def failure_receipt(self, code: str | None, *, permanent: bool) -> Receipt:
        return failure_receipt(code, permanent=permanent)

    def handoff_receipt(self, receipt: ProviderReceipt) -> Receipt | None:
        reported = message_receipt(receipt.status, None)
        return reported if reported is not None and reported.status in FINAL_STATUSES else None

    async def taken_before(
        self, attempt: AttemptRow, message: OutboundSms, known: KnownMessages
    ) -> ProviderReceipt | None:
        if attempt.provider_message_id is not None:
            provider = self._providers.get(attempt.provider or "")
            status = await provider.fetch_status(attempt.provider_message_id) if provider is not None else None
            return ProviderReceipt(
                provider=attempt.provider or self.route,
                provider_message_id=attempt.provider_message_id,
                status=status or "sent",
            )
        if attempt.body_fingerprint is None or attempt.calling_at is None:
            return None
        return await self.failover.find_sent(message.to, attempt.calling_at, attempt.body_fingerprint)

    async def current_receipt(self, attempt: AttemptRow) -> Receipt | None:
        provider = self._providers.get(attempt.provider or "")
        if provider is None or attempt.provider_message_id is None:
            return None
        status = await provider.fetch_status(attempt.provider_message_id)
        return message_receipt(status, None) if status else None

    def callback_signers(self, route: str | None) -> WebhookSigners | None:
        if route in self._tokens:
            return WebhookSigners(label=route, tokens={route: self._tokens[route]})
        if route == self.route:
            return WebhookSigners(label=route, tokens=self._tokens)  # whichever provider sent it signs its receipts
        return None

    def read_callback(self, params: Mapping[str, str]) -> StatusReport:
        return read_status_callback(params)

    async def close(self) -> None:
        await self.failover.close()
