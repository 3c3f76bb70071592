"""The voice channel: Twilio Programmable Voice calls that fetch their TwiML when answered (``routes/calls.py``).

A stranded attempt is looked for by the call SID a callback recorded, else among the calls to that number since the
attempt began that no attempt of ours claims. Call progress comes as signed status callbacks to
``/v1/callbacks/voice``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import ClassVar
from urllib.parse import quote

import asyncpg

from services.delivery.channels.base import CallingMarks, DeliveryChannel, KnownMessages, NoticeToSend, WebhookSigners
from services.delivery.domain import Receipt, RepeatPatterns
from services.delivery.providers.base import ProviderReceipt, StatusReport
from services.delivery.providers.twilio.voice import (
    OutboundCall,
    TwilioVoiceProvider,
    call_receipt,
    failure_receipt,
    read_status_callback,
)
from services.delivery.rendering import CallStep, NoticeRenderer
from services.delivery.sendrate import SharedSendRate
from services.delivery.settings import DeliverySettings
from services.delivery.store.attempts import AttemptRow
from shared.vocabulary import Channel, normalise_identifier


class VoiceChannel(DeliveryChannel[OutboundCall]):
    channel: ClassVar[Channel] = Channel.VOICE
    reconciles_receipts: ClassVar[bool] = True
    callback_path: ClassVar[str | None] = "/voice"

    def __init__(
        self,
        *,
        provider: TwilioVoiceProvider,
        auth_token: str,
        rate_limiter: SharedSendRate,
        renderer: NoticeRenderer,
        public_base_url: str,
        repeats: RepeatPatterns,
    ) -> None:
        super().__init__(repeats)
        self.provider = provider
        self.signers = WebhookSigners(label=provider.name, tokens={provider.name: auth_token})
        """Who signs every webhook of a call: its status callbacks and its TwiML and PIN requests."""
        self._limiter = rate_limiter
        self._renderer = renderer
        self._base_url = public_base_url.rstrip("/")

    @classmethod
    def from_settings(
        cls, settings: DeliverySettings, pool: Callable[[], asyncpg.Pool], renderer: NoticeRenderer
    ) -> VoiceChannel:
        voice = settings.voice_provider
        provider = TwilioVoiceProvider(
            name=voice.name,
            account_sid=voice.account_sid,
            auth_token=voice.auth_token,
            from_number=voice.from_number,
            base_url=voice.base_url,
            timeout=voice.timeout,
        )
        return cls(
            provider=provider,
            auth_token=voice.auth_token,
            rate_limiter=SharedSendRate(pool, f"voice:{voice.name}", voice.rate_per_second),
            renderer=renderer,
            public_base_url=settings.public_base_url,
            repeats=settings.repeats(),
        )

    def normalise_contact(self, contact: str) -> str:
        return normalise_identifier(contact)

    def render(self, notice: NoticeToSend) -> OutboundCall:
        """The call fetches its TwiML when answered (then Twilio says whether a person or a machine answered); it
        is rendered once now so that a notice that cannot be spoken fails before anyone's phone rings."""
        self._renderer.render_call(
            notice.request, notice.agency, step=CallStep.NOTICE, confirm=False, action_url=None, secret=notice.secret
        )
        reference = quote(notice.attempt_id, safe="")
        return OutboundCall(
            to=notice.contact,
            twiml="",
            url=f"{self._base_url}/v1/calls/{reference}/twiml",
            reference=notice.attempt_id,
            status_callback_url=f"{self._base_url}/v1/callbacks/voice?ref={reference}",
        )

    def calling_marks(self, message: OutboundCall) -> CallingMarks:
        return CallingMarks()  # the time the call began is enough: calls are listed by when they were created

    async def send(self, message: OutboundCall) -> ProviderReceipt:
        await self._limiter.acquire()
        return await self.provider.call(message)

    def failure_receipt(self, code: str | None, *, permanent: bool) -> Receipt:
        return failure_receipt(code, permanent=permanent)

    async def taken_before(
        self, attempt: AttemptRow, message: OutboundCall, known: KnownMessages
    ) -> ProviderReceipt | None:
        """Twilio's call resource does not carry our TwiML or reference; a call of another notice to the same number
        is told apart by its SID, which its own attempt recorded (from the answer or the first status callback)."""
        if attempt.provider_message_id is not None:
            status = await self.provider.fetch_status(attempt.provider_message_id)
            return ProviderReceipt(
                provider=attempt.provider or self.provider.name,
                provider_message_id=attempt.provider_message_id,
                status=status or "sent",
            )
        if attempt.calling_at is None:
            return None
        placed = await self.provider.placed_since(message.to, attempt.calling_at)
        if not placed:
            return None
        claimed = await known([call.provider_message_id for call in placed])
        return next((call for call in placed if call.provider_message_id not in claimed), None)

    async def current_receipt(self, attempt: AttemptRow) -> Receipt | None:
        if attempt.provider_message_id is None:
            return None
        status = await self.provider.fetch_status(attempt.provider_message_id)
        return call_receipt(status) if status else None

    def callback_signers(self, route: str | None) -> WebhookSigners | None:
        return self.signers if route is None else None

    def read_callback(self, params: Mapping[str, str]) -> StatusReport:
        return read_status_callback(params)

    async def close(self) -> None:
        await self.provider.close()
