"""The email channel: SMTP through one relay, paced at its rate across every replica.

SMTP acceptance is the last receipt email gives (a later bounce arrives through ``/v1/bounces``), and SMTP cannot
be asked whether it took a message: a stranded attempt is sent again with the same Message-ID, and its history says
that a duplicate is possible.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import asyncpg

from services.delivery.channels.base import CallingMarks, DeliveryChannel, NoticeToSend
from services.delivery.domain import Receipt, RepeatPatterns
from services.delivery.providers.base import OutboundEmail, ProviderReceipt
from services.delivery.providers.smtp import SmtpEmailProvider, failure_receipt
from services.delivery.rendering import NoticeRenderer
from services.delivery.sendrate import SharedSendRate
from services.delivery.settings import DeliverySettings
from shared.vocabulary import Channel


class EmailChannel(DeliveryChannel[OutboundEmail]):
    channel: ClassVar[Channel] = Channel.EMAIL
    handoff_is_verdict: ClassVar[bool] = True
    resend_detail: ClassVar[str | None] = (
        "sent again after a crash during the SMTP hand-off: a duplicate is possible (same Message-ID)"
    )

    def __init__(
        self,
        *,
        provider: SmtpEmailProvider,
        rate_limiter: SharedSendRate,
        renderer: NoticeRenderer,
        unsubscribe_mailto: str | None,
        repeats: RepeatPatterns,
    ) -> None:
        super().__init__(repeats)
        self.provider = provider
        self._limiter = rate_limiter
        self._renderer = renderer
        self._unsubscribe_mailto = unsubscribe_mailto

    @classmethod
    def from_settings(
        cls, settings: DeliverySettings, pool: Callable[[], asyncpg.Pool], renderer: NoticeRenderer
    ) -> EmailChannel:
        smtp = settings.smtp
        provider = SmtpEmailProvider(
            name="smtp",
            host=smtp.host,
            port=smtp.port,
            from_address=smtp.from_address,
            username=smtp.username,
            password=smtp.password,
            starttls=smtp.starttls,
            use_tls=smtp.use_tls,
            timeout=smtp.timeout,
        )
        return cls(
            provider=provider,
            rate_limiter=SharedSendRate(pool, "email:smtp", smtp.rate_per_second),
            renderer=renderer,
            unsubscribe_mailto=smtp.unsubscribe_mailto,
            repeats=settings.repeats(),
        )

    def normalise_contact(self, contact: str) -> str:
        return contact.strip().lower()

    def render(self, notice: NoticeToSend) -> OutboundEmail:
        email = self._renderer.render_email(notice.request, notice.agency, notice.links, secret=notice.secret)
        return OutboundEmail(
            to=notice.contact,
            subject=email.subject,
            text_body=email.text_body,
            html_body=email.html_body,
            reference=notice.attempt_id,
            message_id=self.provider.message_id(notice.attempt_id),
            unsubscribe_url=notice.links.unsubscribe_url,  # one-click needs a POST-able link
            unsubscribe_mailto=self._unsubscribe_mailto,
        )

    def calling_marks(self, message: OutboundEmail) -> CallingMarks:
        return CallingMarks(email_message_id=message.message_id)

    async def send(self, message: OutboundEmail) -> ProviderReceipt:
        await self._limiter.acquire()
        return await self.provider.send(message)

    def failure_receipt(self, code: str | None, *, permanent: bool) -> Receipt:
        return failure_receipt(code, permanent=permanent)

    async def close(self) -> None:
        await self.provider.close()
