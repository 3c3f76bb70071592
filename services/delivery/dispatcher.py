"""The sending loops: due notices go to providers; stranded attempts are taken over; missed receipts are asked for.

Each attempt is recorded (status ``sending``) and committed when it is claimed; right before the provider call it
records what identifies the message (an SMS body's fingerprint, an email's Message-ID) and when the call began, and
after the call its outcome. A crash in between leaves the attempt in flight until its lease runs out; whoever takes
it over then finds out before sending anything (Twilio has no idempotency key: a second POST is a second message):

- no call was recorded: the crash came first, so it is sent now;
- SMS: a status callback or our bookkeeping named its message, or the provider's message list holds a message to
  that number with that fingerprint since the call began: it went through, and is recorded so, not sent again; when
  the provider cannot tell right now, the attempt waits and asks again later;
- email: SMTP cannot be asked, so it is sent again with the same Message-ID, its history says that a duplicate is
  possible, and ``cw_delivery_possible_duplicates_total`` counts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

import asyncpg
from aiokafka import AIOKafkaProducer

from services.delivery import metrics, store
from services.delivery.domain import (
    FINAL_STATUSES,
    Receipt,
    failure_receipt,
    twilio_receipt,
)
from services.delivery.flows import SOURCE, Bookkeeper, Claim
from services.delivery.links import AcknowledgementTokens
from services.delivery.providers.base import (
    EmailProvider,
    OutboundEmail,
    OutboundSms,
    PermanentProviderError,
    ProviderReceipt,
    SmsProvider,
    TemporaryProviderError,
    body_fingerprint,
)
from services.delivery.providers.failover import AMBIGUOUS_ERROR_CODE
from services.delivery.providers.twilio_voice import OutboundCall, TwilioVoiceProvider, call_receipt
from services.delivery.rendering import CallStep, NoticeLinks, NoticeRenderer, TemplateError
from services.delivery.sendrate import SharedSendRate
from services.delivery.settings import DeliverySettings
from services.delivery.store import AttemptRow
from shared.crypto import ContactCipher, ContactDecryptError
from shared.events import KAFKA_HEADERS, AgencyProfile, DeliveryStatus, encode, new_event
from shared.kafka import H_ERROR, H_ORIGINAL_TOPIC
from shared.logging import redact
from shared.topics import NOTIFICATION_REQUESTED, dead_letter_topic
from shared.vocabulary import Channel, Urgency

log = logging.getLogger(__name__)

CONSUMER_GROUP = "delivery"
H_HISTORY = "cw-history"

HOUSEKEEPING_SECONDS = 1.0
AGENCY_CACHE_SECONDS = 5.0
"""How stale an agency's name and phone numbers in a notice may be (pausing is checked at every claim)."""

Clock = Callable[[], datetime]
Outbound = OutboundSms | OutboundEmail | OutboundCall


def utc_now() -> datetime:
    return datetime.now(UTC)


class StatusLookup(Protocol):
    """A provider that can tell a message's current status (Twilio's ``GET Messages/{sid}.json``)."""

    async def fetch_status(self, provider_message_id: str) -> str | None: ...


class Dispatcher:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        settings: DeliverySettings,
        bookkeeper: Bookkeeper,
        cipher: ContactCipher,
        tokens: AcknowledgementTokens,
        sms: SmsProvider,
        email: EmailProvider,
        voice: TwilioVoiceProvider,
        status_lookups: Mapping[str, StatusLookup],
        producer: AIOKafkaProducer,
        renderer: NoticeRenderer,
        clock: Clock = utc_now,
    ) -> None:
        self._renderer = renderer
        self._pool = pool
        self._settings = settings
        self._book = bookkeeper
        self._cipher = cipher
        self._tokens = tokens
        self._sms = sms
        self._email = email
        self._email_limiter = SharedSendRate(lambda: pool, "email:smtp", settings.smtp.rate_per_second)
        self._voice = voice
        self._voice_limiter = SharedSendRate(
            lambda: pool, f"voice:{voice.name}", settings.voice_provider.rate_per_second
        )
        self._status_lookups = status_lookups
        self._producer = producer
        self._clock = clock
        self._wake = asyncio.Event()
        self._housekept_at = -HOUSEKEEPING_SECONDS
        self._agencies: dict[str, tuple[float, AgencyProfile | None]] = {}

    # --- the loops --------------------------------------------------------------------------------------------

    def wake(self) -> None:
        """Notices due now were stored: claim them at once rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Keep up to ``dispatch_concurrency`` sends going until cancelled.

        Slots are refilled as sends finish, in claims of at least a quarter of them while busy (so each claim's
        transaction carries many notices). When nothing more is due the loop waits for :meth:`wake` or the poll
        interval (notices due later, leases that ran out, notices stored by another replica).
        """
        sending: set[asyncio.Task[None]] = set()
        concurrency = self._settings.dispatch_concurrency
        refill_at = max(1, concurrency // 4)
        try:
            while True:
                self._wake.clear()
                wanted = min(concurrency - len(sending), self._settings.dispatch_batch_size)
                exhausted = False
                if wanted >= refill_at:
                    claims = await self.claim(wanted)
                    for claim in claims:
                        task = asyncio.create_task(self._send_logged(claim))
                        sending.add(task)
                        task.add_done_callback(sending.discard)
                    exhausted = len(claims) < wanted
                await self._housekeeping()
                if concurrency - len(sending) < refill_at:
                    await asyncio.wait(set(sending), return_when=asyncio.FIRST_COMPLETED)
                elif exhausted:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=self._settings.dispatch_interval_seconds)
        except asyncio.CancelledError:
            for task in sending:  # each stays in flight; its lease running out brings it back to be looked up
                task.cancel()
            await asyncio.gather(*sending, return_exceptions=True)
            raise
        except Exception:
            # Claiming failed (the database?): sends under way finish their bookkeeping before the loop restarts.
            await asyncio.gather(*sending, return_exceptions=True)
            raise

    async def claim(self, limit: int) -> list[Claim]:
        """Record (and commit) an attempt for up to ``limit`` due notices, oldest first."""
        async with self._pool.acquire() as connection, connection.transaction():
            return await self._book.claim_due(connection, self._clock(), limit)

    async def _housekeeping(self) -> None:
        """Park given-up notices and refresh the retry gauge, about once a second however busy the loop is."""
        now = time.monotonic()
        if now - self._housekept_at < HOUSEKEEPING_SECONDS:
            return
        self._housekept_at = now
        try:
            await self.dead_letter_once()
            async with self._pool.acquire() as connection:
                metrics.RETRIES_IN_FLIGHT.set(await store.count_retrying(connection))
        except Exception:
            log.exception("dead letters or the retry gauge failed; sending goes on, they are tried again shortly")

    async def run_reconciler(self) -> None:
        """Ask providers about SMS whose final receipt never came (a lost status callback)."""
        while True:
            await self.reconcile_once()
            await asyncio.sleep(self._settings.reconcile_interval_seconds)

    async def _send_logged(self, claim: Claim) -> None:
        try:
            await self._send(claim)
        except Exception:
            # The attempt stays in flight; its lease running out brings it back, and the provider is asked first.
            log.exception("attempt %s failed unexpectedly; it will be taken over", claim.attempt_id)

    # --- one attempt ------------------------------------------------------------------------------------------

    async def _send(self, claim: Claim) -> None:
        request = claim.notification.request
        try:
            outbound = await self._prepare(claim)
        except (TemplateError, ContactDecryptError, ValueError) as error:
            log.error("notice %s cannot be prepared: %s", request.notification_id, type(error).__name__)
            detail = f"cannot prepare the notice: {type(error).__name__}: {error}"
            await self._apply(claim, Receipt(DeliveryStatus.TECHNICAL_FAILURE), detail=detail[:500])
            return
        if claim.resumed:
            try:
                taken = await self._taken_before(claim, outbound)
            except TemporaryProviderError as error:
                await self._postpone(claim, f"cannot tell yet whether the provider took it: {error}")
                return
            if taken is not None:
                log.info("attempt %s: the provider took it before the crash; not sent again", claim.attempt_id)
                await self._handed_off(claim, taken)
                return
        await self._record_calling(claim, outbound)
        self._crash_if_asked(claim, self._settings.crash_before_call_marker, "before the provider call")
        try:
            if isinstance(outbound, OutboundSms):
                receipt = await self._sms.send(outbound)
            elif isinstance(outbound, OutboundCall):
                await self._voice_limiter.acquire()
                receipt = await self._voice.call(outbound)
            else:
                await self._email_limiter.acquire()
                receipt = await self._email.send(outbound)
        except TemporaryProviderError as error:
            if error.code == AMBIGUOUS_ERROR_CODE:
                # The provider may have taken it: it stays in flight, and the provider is asked before any resend.
                await self._postpone(claim, f"ambiguous hand-off: {error}")
                return
            receipt_on_error = failure_receipt(request.channel, error.code, permanent=False)
            await self._apply(claim, receipt_on_error, detail=str(error)[:500])
            return
        except PermanentProviderError as error:
            receipt_on_error = failure_receipt(request.channel, error.code, permanent=True)
            await self._apply(claim, receipt_on_error, detail=str(error)[:500])
            return
        self._crash_if_asked(claim, self._settings.crash_after_handoff_marker, "right after handing off")
        await self._handed_off(claim, receipt)

    async def _record_calling(self, claim: Claim, outbound: Outbound) -> None:
        """Commit what identifies the message before the call, so a take-over can look for it."""
        async with self._pool.acquire() as connection:
            if isinstance(outbound, OutboundCall):
                await store.record_calling(connection, claim.attempt_id, self._clock())  # when: calls list by time
            elif isinstance(outbound, OutboundSms):
                await store.record_calling(
                    connection, claim.attempt_id, self._clock(), body_fingerprint=body_fingerprint(outbound.body)
                )
            else:
                await store.record_calling(
                    connection, claim.attempt_id, self._clock(), email_message_id=outbound.message_id
                )

    async def _taken_before(self, claim: Claim, outbound: Outbound) -> ProviderReceipt | None:
        """Whether the provider took this attempt before it was stranded (see the module docstring); None if not."""
        async with self._pool.acquire() as connection:
            attempt = await store.get_attempt(connection, claim.attempt_id)
        if attempt is None or attempt.calling_at is None:
            return None
        if isinstance(outbound, OutboundEmail):
            await self._note_possible_duplicate(attempt)
            return None
        if isinstance(outbound, OutboundCall) and attempt.provider_message_id is None:
            return await self._call_placed_before(outbound, attempt.calling_at)
        if attempt.provider_message_id is not None:
            lookup = (
                self._voice if isinstance(outbound, OutboundCall) else self._status_lookups.get(attempt.provider or "")
            )
            status = await lookup.fetch_status(attempt.provider_message_id) if lookup is not None else None
            return ProviderReceipt(
                provider=attempt.provider or self._sms.name,
                provider_message_id=attempt.provider_message_id,
                status=status or "sent",
            )
        if attempt.body_fingerprint is None:
            return None
        return await self._sms.find_sent(outbound.to, attempt.calling_at, attempt.body_fingerprint)

    async def _call_placed_before(self, outbound: OutboundCall, since: datetime) -> ProviderReceipt | None:
        """A call to this number since the attempt began that no attempt of ours claims is this attempt's call.

        Twilio's call resource does not carry our TwiML or reference; a call of another notice to the same number
        is told apart by its SID, which its own attempt recorded (from the answer or the first status callback).
        """
        placed = await self._voice.placed_since(outbound.to, since)
        if not placed:
            return None
        async with self._pool.acquire() as connection:
            known = await store.known_provider_messages(connection, [call.provider_message_id for call in placed])
        return next((call for call in placed if call.provider_message_id not in known), None)

    async def _note_possible_duplicate(self, attempt: AttemptRow) -> None:
        metrics.POSSIBLE_DUPLICATES.labels(attempt.channel).inc()
        log.warning(
            "attempt %s resent after a crash during its SMTP hand-off: a duplicate is possible", attempt.attempt_id
        )
        async with self._pool.acquire() as connection:
            await store.update_attempt(
                connection,
                attempt.attempt_id,
                self._clock(),
                detail="sent again after a crash during the SMTP hand-off: a duplicate is possible (same Message-ID)",
            )

    async def _prepare(self, claim: Claim) -> Outbound:
        """Decrypt the contact (only now, just before the call) and render the notice."""
        request = claim.notification.request
        agency = await self._agency(request.agency_id)
        contact = self._cipher.decrypt(request.contact_ciphertext)
        secret = self._cipher.decrypt(request.secret_ciphertext) if request.secret_ciphertext else None
        manage_url = self._decrypt(request.manage_url_ciphertext)
        unsubscribe_url = self._decrypt(request.unsubscribe_url_ciphertext)  # one-click needs a POST-able link
        acknowledge_url = (
            self._tokens.url(self._settings.public_base_url, request.notification_id)
            if request.urgency is Urgency.URGENT
            else None
        )
        links = NoticeLinks(
            manage_url=manage_url,
            unsubscribe_url=unsubscribe_url,
            acknowledge_url=acknowledge_url,
            verify_url=self._decrypt(request.verify_url_ciphertext),
        )
        if request.channel is Channel.VOICE:
            base = self._settings.public_base_url.rstrip("/")
            reference = quote(claim.attempt_id, safe="")
            # The call fetches its TwiML when answered (then Twilio says whether a person or a machine answered).
            self._renderer.render_call(
                request, agency, step=CallStep.NOTICE, confirm=False, action_url=None, secret=secret
            )
            return OutboundCall(
                to=contact,
                twiml="",
                url=f"{base}/v1/calls/{reference}/twiml",
                reference=claim.attempt_id,
                status_callback_url=f"{base}/v1/callbacks/voice?ref={reference}",
            )
        if request.channel is Channel.SMS:
            sms = self._renderer.render_sms(request, agency, links, secret=secret)
            return OutboundSms(
                to=contact,
                body=sms.body,
                reference=claim.attempt_id,
                status_callback_url=self.callback_url(claim.attempt_id),
            )
        email = self._renderer.render_email(request, agency, links, secret=secret)
        return OutboundEmail(
            to=contact,
            subject=email.subject,
            text_body=email.text_body,
            html_body=email.html_body,
            reference=claim.attempt_id,
            message_id=self._email.message_id(claim.attempt_id),
            unsubscribe_url=unsubscribe_url,
            unsubscribe_mailto=self._settings.smtp.unsubscribe_mailto,
        )

    async def _agency(self, agency_id: str) -> AgencyProfile | None:
        """The agency's profile for the notice text, read at most every few seconds rather than per send."""
        cached = self._agencies.get(agency_id)
        now = time.monotonic()
        if cached is not None and now - cached[0] < AGENCY_CACHE_SECONDS:
            return cached[1]
        async with self._pool.acquire() as connection:
            agency = await store.get_agency(connection, agency_id)
        self._agencies[agency_id] = (now, agency)
        return agency

    def _decrypt(self, ciphertext: str | None) -> str | None:
        return self._cipher.decrypt(ciphertext) if ciphertext else None

    def callback_url(self, attempt_id: str) -> str:
        """Where the provider reports; ``ref`` ties even a receipt that beats our bookkeeping to its attempt."""
        base = self._settings.public_base_url.rstrip("/")
        return f"{base}/v1/callbacks/sms/{quote(self._sms.name, safe='')}?ref={quote(attempt_id, safe='')}"

    def _crash_if_asked(self, claim: Claim, marker: str | None, when: str) -> None:
        """Test hook: exit hard at this point of a send, once (the marker file, written then, disarms it)."""
        if marker is None or self._settings.environment == "production":
            return
        path = Path(marker)
        if path.exists():
            return
        path.write_text(claim.attempt_id)
        log.warning("test hook: exiting %s %s", when, claim.attempt_id)
        os._exit(70)

    async def _handed_off(self, claim: Claim, receipt: ProviderReceipt) -> None:
        now = self._clock()
        async with self._pool.acquire() as connection, connection.transaction():
            await self._book.record_handoff(
                connection,
                claim.attempt_id,
                provider=receipt.provider,
                provider_message_id=receipt.provider_message_id,
                now=now,
            )
            if claim.notification.request.channel is Channel.SMS:
                reported = twilio_receipt(receipt.status, None)
                if reported is not None and reported.status in FINAL_STATUSES:
                    await self._book.apply_receipt(connection, claim.attempt_id, reported, now=now)

    async def _apply(self, claim: Claim, receipt: Receipt, *, detail: str) -> None:
        # Provider messages should not carry contact details; scrub them anyway before they are stored and shown.
        detail = redact(detail)
        async with self._pool.acquire() as connection, connection.transaction():
            await self._book.apply_receipt(connection, claim.attempt_id, receipt, now=self._clock(), detail=detail)

    async def _postpone(self, claim: Claim, why: str) -> None:
        """Keep the attempt in flight: when its lease runs out it is taken over, and the provider asked first."""
        number = claim.notification.failure_count + 1
        delay = self._book.scheduling.retry.delay(number)
        log.warning("attempt %s postponed %.0f s: %s", claim.attempt_id, delay, why)
        async with self._pool.acquire() as connection, connection.transaction():
            await store.update_notification(
                connection,
                claim.notification.notification_id,
                lease_until=self._clock() + timedelta(seconds=delay),
                failure_count=number,
            )
            await store.update_attempt(connection, claim.attempt_id, self._clock(), detail=redact(why)[:500])

    # --- dead letters -----------------------------------------------------------------------------------------

    async def dead_letter_once(self, limit: int = 100) -> int:
        """Park given-up notices on ``dlq.delivery`` with their attempt history, for operators to replay."""
        topic = self._settings.kafka.topic(dead_letter_topic(CONSUMER_GROUP))
        origin = self._settings.kafka.topic(NOTIFICATION_REQUESTED.name)
        async with self._pool.acquire() as connection, connection.transaction():
            rows = await store.notifications_to_dead_letter(connection, limit)
            if not rows:
                return 0
            histories = await store.attempts_of(connection, [row.notification_id for row in rows])
            for row in rows:
                history = [
                    {
                        "attempt_id": attempt.attempt_id,
                        "number": attempt.number,
                        "purpose": attempt.purpose,
                        "contact": attempt.contact_masked,
                        "provider": attempt.provider,
                        "status": attempt.status.value,
                        "error_code": attempt.error_code,
                        "detail": attempt.detail,
                        "created_at": attempt.created_at.isoformat(),
                        "completed_at": attempt.completed_at.isoformat() if attempt.completed_at else None,
                    }
                    for attempt in histories[row.notification_id]
                ]
                event = new_event(
                    row.request,
                    source=SOURCE,
                    subject=row.notification_id,
                    event_id=row.event_id,
                    trace_id=row.trace_id,
                )
                await self._producer.send_and_wait(
                    topic,
                    value=encode(event),
                    key=row.notification_id.encode(),
                    headers=[
                        *KAFKA_HEADERS,
                        (H_ORIGINAL_TOPIC, origin.encode()),
                        (H_ERROR, (row.parked_reason or "gave up")[:2000].encode()),
                        (H_HISTORY, json.dumps(history).encode()),
                    ],
                )
                await store.update_notification(connection, row.notification_id, dead_lettered_at=self._clock())
        log.warning("parked %d notices on the dead-letter topic", len(rows))
        return len(rows)

    # --- reconciliation ---------------------------------------------------------------------------------------

    async def reconcile_once(self, limit: int = 200) -> int:
        now = self._clock()
        settings = self._settings
        async with self._pool.acquire() as connection:
            attempts = await store.attempts_awaiting_receipt(
                connection,
                handed_off_before=now - timedelta(seconds=settings.reconcile_after_seconds),
                handed_off_after=now - timedelta(seconds=settings.receipt_window_seconds),
                checked_before=now - timedelta(seconds=settings.reconcile_interval_seconds),
                limit=limit,
            )
        applied = 0
        for attempt in attempts:
            if attempt.provider_message_id is None:
                continue
            if attempt.channel == Channel.VOICE.value:
                status = await self._voice.fetch_status(attempt.provider_message_id)
                receipt = call_receipt(status) if status else None
            else:
                lookup = self._status_lookups.get(attempt.provider or "")
                if lookup is None:
                    continue
                status = await lookup.fetch_status(attempt.provider_message_id)
                receipt = twilio_receipt(status, None) if status else None
            async with self._pool.acquire() as connection, connection.transaction():
                await store.update_attempt(connection, attempt.attempt_id, self._clock(), last_checked_at=now)
                if receipt is not None:
                    await self._book.apply_receipt(connection, attempt.attempt_id, receipt, now=self._clock())
                    applied += 1
        return applied
