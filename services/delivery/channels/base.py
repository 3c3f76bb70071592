"""The interface every channel implements; a new channel is its vocabulary, one migration and one module here.

A channel knows how to render a notice for itself, how to hand it to its provider(s) (in failover order), how to
read its providers' receipts and status callbacks (their statuses mapped onto ours), how to tell whether a
stranded attempt already reached its provider, which repeat schedule applies and whether quiet hours do. The
dispatcher, the bookkeeping (retries, repeats, receipts, history), the reconciler and the callback routes work for
every channel through this interface, without naming one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

from services.delivery.domain import Receipt, RepeatPattern, RepeatPatterns
from services.delivery.providers.base import CallbackError, ProviderReceipt, StatusReport
from services.delivery.rendering import NoticeLinks
from services.delivery.store.attempts import AttemptRow
from shared.events import AgencyProfile, NotificationKind, NotificationRequested
from shared.vocabulary import Channel, Urgency

Message = TypeVar("Message")
"""What a channel hands to its provider: an SMS, an email, a call."""

KnownMessages = Callable[[Sequence[str]], Awaitable[set[str]]]
"""Which of these provider message ids some attempt of ours already recorded."""


@dataclass(frozen=True)
class NoticeToSend:
    """Everything a channel renders one attempt of a notice from (the contact decrypted just before the call)."""

    request: NotificationRequested
    agency: AgencyProfile | None
    attempt_id: str
    contact: str
    secret: str | None
    links: NoticeLinks


@dataclass(frozen=True)
class CallingMarks:
    """What an attempt records right before its provider call, so that a take-over can find the message."""

    body_fingerprint: str | None = None
    email_message_id: str | None = None


@dataclass(frozen=True)
class WebhookSigners:
    """Whose ``X-Twilio-Signature`` a webhook may carry (provider name → auth token); ``label`` names it in metrics."""

    label: str
    tokens: Mapping[str, str]


class DeliveryChannel(ABC, Generic[Message]):
    """One channel: its providers, its rendering, its receipts and its rules."""

    channel: ClassVar[Channel]
    quiet_hours_apply: ClassVar[bool] = True
    """Informational notices requested in the subscriber's quiet hours wait for morning."""
    handoff_is_verdict: ClassVar[bool] = False
    """The provider's acceptance is the last receipt it will give (SMTP): the notice ends there unless it repeats."""
    reconciles_receipts: ClassVar[bool] = False
    """Its providers can be asked about an attempt whose final receipt never came (a lost status callback)."""
    callback_path: ClassVar[str | None] = None
    """Where its providers post status callbacks, under ``/v1/callbacks`` (``{provider}`` names the signer)."""
    resend_detail: ClassVar[str | None] = None
    """Set when its provider cannot be asked whether a stranded attempt went through: the attempt is sent again,
    and its history says this."""

    def __init__(self, repeats: RepeatPatterns) -> None:
        self._repeats = repeats

    def repeat_pattern(self, kind: NotificationKind, urgency: Urgency) -> RepeatPattern:
        """How a notice of this kind and urgency repeats on this channel (``DELIVERY_REPEAT_PATTERNS``)."""
        return self._repeats.of(kind, urgency, self.channel)

    def normalise_contact(self, contact: str) -> str:
        """The contact as its blind index is computed (opt-outs are honoured by it)."""
        return contact

    @abstractmethod
    def render(self, notice: NoticeToSend) -> Message:
        """The message of one attempt; raises ``TemplateError`` when its templates cannot render it."""

    @abstractmethod
    def calling_marks(self, message: Message) -> CallingMarks:
        """What to record of the message before the provider call."""

    @abstractmethod
    async def send(self, message: Message) -> ProviderReceipt:
        """Hand the message to the provider (the next in failover order when one fails); raises ``ProviderError``."""

    @abstractmethod
    def failure_receipt(self, code: str | None, *, permanent: bool) -> Receipt:
        """What a refused hand-off (or a later failure report) means: temporary, permanent, the contact disabled."""

    def handoff_receipt(self, receipt: ProviderReceipt) -> Receipt | None:
        """What the provider's answer to the hand-off already says beyond "taken" (a final status), if anything."""
        return None

    async def taken_before(self, attempt: AttemptRow, message: Message, known: KnownMessages) -> ProviderReceipt | None:
        """Whether the provider took this stranded attempt (whose call began) before the crash; None if not.

        Raises ``TemporaryProviderError`` when the provider cannot tell now: nothing is sent then.
        """
        return None

    async def current_receipt(self, attempt: AttemptRow) -> Receipt | None:
        """Ask the provider for the attempt's status now (reconciliation); None if it cannot say."""
        return None

    def callback_signers(self, route: str | None) -> WebhookSigners | None:
        """Who may sign a status callback posted to ``callback_path`` with this ``{provider}``; None: no such path."""
        return None

    def read_callback(self, params: Mapping[str, str]) -> StatusReport:
        """A status callback's form, read; raises :class:`CallbackError`."""
        raise CallbackError(f"{self.channel} takes no status callbacks")

    async def close(self) -> None:
        """Release the providers' connections."""
