"""The sending loops: due notices go to their channel's providers; stranded attempts are taken over; missed receipts
are asked for. Nothing here names a channel: each one's rules come from its module in ``channels/``.

Each attempt is recorded (status ``sending``) and committed when it is claimed; right before the provider call it
records what identifies the message (the channel's calling marks: an SMS body's fingerprint, an email's Message-ID)
and when the call began, and after the call its outcome. A crash in between leaves the attempt in flight until its
lease runs out; whoever takes it over then finds out before sending anything (Twilio has no idempotency key: a
second POST is a second message):

- no call was recorded: the crash came first, so it is sent now;
- the channel's provider can be asked (SMS, voice): when it has the message, it is recorded so, not sent again;
  when it cannot tell right now, the attempt waits and asks again later;
- it cannot be asked (SMTP): it is sent again (with the same Message-ID), its history says that a duplicate is
  possible, and ``cw_delivery_possible_duplicates_total`` counts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from services.delivery import metrics
from services.delivery.channels.base import NoticeToSend
from services.delivery.channels.registry import AnyChannel, Channels
from services.delivery.domain import FINAL_STATUSES, Receipt
from services.delivery.flows.bookkeeper import Bookkeeper
from services.delivery.flows.dead_letters import dead_letter_once
from services.delivery.flows.events import Claim
from services.delivery.flows.group_commit import GroupCommit, batched_events
from services.delivery.flows.reconciliation import reconcile_once
from services.delivery.links import AcknowledgementTokens
from services.delivery.providers.base import (
    AMBIGUOUS_ERROR_CODE,
    PermanentProviderError,
    ProviderReceipt,
    TemporaryProviderError,
)
from services.delivery.rendering import NoticeLinks, TemplateError
from services.delivery.settings import DeliverySettings
from services.delivery.store import agencies, attempts, notifications
from services.delivery.store.attempts import AttemptRow
from shared.crypto import ContactCipher, ContactDecryptError
from shared.db import Connection
from shared.events import AgencyProfile, DeliveryStatus
from shared.logging import redact
from shared.vocabulary import Urgency

log = logging.getLogger(__name__)

HOUSEKEEPING_SECONDS = 1.0
AGENCY_CACHE_SECONDS = 5.0
"""How stale an agency's name and phone numbers in a notice may be (pausing is checked at every claim)."""

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Dispatcher:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        settings: DeliverySettings,
        bookkeeper: Bookkeeper,
        group_commit: GroupCommit,
        cipher: ContactCipher,
        tokens: AcknowledgementTokens,
        channels: Channels,
        producer: AIOKafkaProducer,
        clock: Clock = utc_now,
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._book = bookkeeper
        self._group_commit = group_commit
        self._cipher = cipher
        self._tokens = tokens
        self._channels = channels
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
        async with self._pool.acquire() as connection, connection.transaction(), batched_events(connection):
            claims = await self._book.claim_due(connection, self._clock(), limit)
            await self._refresh_agencies(connection, {claim.notification.request.agency_id for claim in claims})
            return claims

    async def _refresh_agencies(self, connection: Connection, agency_ids: set[str]) -> None:
        """Read the stale profiles among these agencies in one query, on the claim's connection."""
        now = time.monotonic()
        stale = sorted(
            agency_id
            for agency_id in agency_ids
            if agency_id not in self._agencies or now - self._agencies[agency_id][0] >= AGENCY_CACHE_SECONDS
        )
        if stale:
            found = await agencies.agencies_of(connection, stale)
            self._agencies |= {agency_id: (now, found.get(agency_id)) for agency_id in stale}

    async def _housekeeping(self) -> None:
        """Park given-up notices and refresh the retry gauge, about once a second however busy the loop is."""
        now = time.monotonic()
        if now - self._housekept_at < HOUSEKEEPING_SECONDS:
            return
        self._housekept_at = now
        try:
            await self.dead_letter_once()
            async with self._pool.acquire() as connection:
                metrics.RETRIES_IN_FLIGHT.set(await notifications.count_retrying(connection))
        except Exception:
            log.exception("dead letters or the retry gauge failed; sending goes on, they are tried again shortly")

    async def dead_letter_once(self, limit: int = 100) -> int:
        return await dead_letter_once(self._pool, self._producer, self._settings.kafka, self._clock(), limit)

    async def run_reconciler(self) -> None:
        """Ask providers about attempts whose final receipt never came (a lost status callback)."""
        while True:
            await self.reconcile_once()
            await asyncio.sleep(self._settings.reconcile_interval_seconds)

    async def reconcile_once(self, limit: int = 200) -> int:
        return await reconcile_once(
            pool=self._pool,
            channels=self._channels,
            bookkeeper=self._book,
            settings=self._settings,
            clock=self._clock,
            limit=limit,
        )

    async def _send_logged(self, claim: Claim) -> None:
        try:
            await self._send(claim)
        except Exception:
            # The attempt stays in flight; its lease running out brings it back, and the provider is asked first.
            log.exception("attempt %s failed unexpectedly; it will be taken over", claim.attempt_id)

    # --- one attempt ------------------------------------------------------------------------------------------

    async def _send(self, claim: Claim) -> None:
        request = claim.notification.request
        channel = self._channels[request.channel]
        try:
            message = channel.render(await self._notice(claim))
        except (TemplateError, ContactDecryptError, ValueError) as error:
            log.error("notice %s cannot be prepared: %s", request.notification_id, type(error).__name__)
            detail = f"cannot prepare the notice: {type(error).__name__}: {error}"
            await self._apply(claim, Receipt(DeliveryStatus.TECHNICAL_FAILURE), detail=detail[:500])
            return
        if claim.resumed:
            try:
                taken = await self._taken_before(claim, channel, message)
            except TemporaryProviderError as error:
                await self._postpone(claim, f"cannot tell yet whether the provider took it: {error}")
                return
            if taken is not None:
                log.info("attempt %s: the provider took it before the crash; not sent again", claim.attempt_id)
                await self._handed_off(claim, channel, taken)
                return
        marks = channel.calling_marks(message)
        calling_at = self._clock()

        async def record_calling(connection: Connection) -> None:
            await attempts.record_calling(
                connection,
                claim.attempt_id,
                calling_at,
                body_fingerprint=marks.body_fingerprint,
                email_message_id=marks.email_message_id,
            )

        await self._group_commit.run(claim.attempt_id, record_calling)  # what identifies it, committed before the call
        self._crash_if_asked(claim, self._settings.crash_before_call_marker, "before the provider call")
        try:
            receipt = await channel.send(message)
        except TemporaryProviderError as error:
            if error.code == AMBIGUOUS_ERROR_CODE:
                # The provider may have taken it: it stays in flight, and the provider is asked before any resend.
                await self._postpone(claim, f"ambiguous hand-off: {error}")
                return
            await self._apply(claim, channel.failure_receipt(error.code, permanent=False), detail=str(error)[:500])
            return
        except PermanentProviderError as error:
            await self._apply(claim, channel.failure_receipt(error.code, permanent=True), detail=str(error)[:500])
            return
        self._crash_if_asked(claim, self._settings.crash_after_handoff_marker, "right after handing off")
        await self._handed_off(claim, channel, receipt)

    async def _taken_before(self, claim: Claim, channel: AnyChannel, message: Any) -> ProviderReceipt | None:
        """Whether the provider took this attempt before it was stranded (see the module docstring); None if not."""
        async with self._pool.acquire() as connection:
            attempt = await attempts.get_attempt(connection, claim.attempt_id)
        if attempt is None or attempt.calling_at is None:
            return None
        if channel.resend_detail is not None:
            await self._note_possible_duplicate(attempt, channel.resend_detail)
            return None
        return await channel.taken_before(attempt, message, self._known_messages)

    async def _known_messages(self, provider_message_ids: Sequence[str]) -> set[str]:
        async with self._pool.acquire() as connection:
            return await attempts.known_provider_messages(connection, provider_message_ids)

    async def _note_possible_duplicate(self, attempt: AttemptRow, detail: str) -> None:
        metrics.POSSIBLE_DUPLICATES.labels(attempt.channel.value).inc()
        log.warning("attempt %s resent after a crash during its hand-off: a duplicate is possible", attempt.attempt_id)
        async with self._pool.acquire() as connection:
            await attempts.update_attempt(connection, attempt.attempt_id, self._clock(), detail=detail)

    async def _notice(self, claim: Claim) -> NoticeToSend:
        """Decrypt the contact (only now, just before the call) and gather what the notice says."""
        request = claim.notification.request
        acknowledge_url = (
            self._tokens.url(self._settings.public_base_url, request.notification_id)
            if request.urgency is Urgency.URGENT
            else None
        )
        return NoticeToSend(
            request=request,
            agency=await self._agency(request.agency_id),
            attempt_id=claim.attempt_id,
            contact=self._cipher.decrypt(request.contact_ciphertext),
            secret=self._decrypt(request.secret_ciphertext),
            links=NoticeLinks(
                manage_url=self._decrypt(request.manage_url_ciphertext),
                unsubscribe_url=self._decrypt(request.unsubscribe_url_ciphertext),
                acknowledge_url=acknowledge_url,
                verify_url=self._decrypt(request.verify_url_ciphertext),
            ),
        )

    async def _agency(self, agency_id: str) -> AgencyProfile | None:
        """The agency's profile for the notice text, read at most every few seconds rather than per send (claims
        read the stale ones of a batch at once)."""
        cached = self._agencies.get(agency_id)
        now = time.monotonic()
        if cached is not None and now - cached[0] < AGENCY_CACHE_SECONDS:
            return cached[1]
        async with self._pool.acquire() as connection:
            agency = await agencies.get_agency(connection, agency_id)
        self._agencies[agency_id] = (now, agency)
        return agency

    def _decrypt(self, ciphertext: str | None) -> str | None:
        return self._cipher.decrypt(ciphertext) if ciphertext else None

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

    async def _handed_off(self, claim: Claim, channel: AnyChannel, receipt: ProviderReceipt) -> None:
        now = self._clock()

        async def record(connection: Connection) -> None:
            await self._book.record_handoff(
                connection,
                claim.attempt_id,
                provider=receipt.provider,
                provider_message_id=receipt.provider_message_id,
                now=now,
            )
            reported = channel.handoff_receipt(receipt)
            if reported is not None and reported.status in FINAL_STATUSES:
                await self._book.apply_receipt(connection, claim.attempt_id, reported, now=now)

        await self._group_commit.run(claim.attempt_id, record, locks_key=True)

    async def _apply(self, claim: Claim, receipt: Receipt, *, detail: str) -> None:
        # Provider messages should not carry contact details; scrub them anyway before they are stored and shown.
        detail = redact(detail)
        now = self._clock()

        async def apply(connection: Connection) -> None:
            await self._book.apply_receipt(connection, claim.attempt_id, receipt, now=now, detail=detail)

        await self._group_commit.run(claim.attempt_id, apply, locks_key=True)

    async def _postpone(self, claim: Claim, why: str) -> None:
        """Keep the attempt in flight: when its lease runs out it is taken over, and the provider asked first."""
        number = claim.notification.failure_count + 1
        delay = self._book.scheduling.retry.delay(number)
        log.warning("attempt %s postponed %.0f s: %s", claim.attempt_id, delay, why)
        async with self._pool.acquire() as connection, connection.transaction():
            await notifications.update_notification(
                connection,
                claim.notification.notification_id,
                lease_until=self._clock() + timedelta(seconds=delay),
                failure_count=number,
            )
            await attempts.update_attempt(connection, claim.attempt_id, self._clock(), detail=redact(why)[:500])
