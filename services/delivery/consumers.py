"""Kafka handlers: event → domain → store (+ outbox). Each is idempotent under redelivery."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import asyncpg
from aiokafka import ConsumerRecord

from services.delivery.channels.registry import Channels
from services.delivery.domain import due_at
from services.delivery.flows.bookkeeper import Bookkeeper
from services.delivery.store import agencies, notifications
from services.delivery.store.notifications import NewNotification
from shared.crypto import ContactCipher, ContactDecryptError
from shared.db import Connection
from shared.envelope import CloudEvent
from shared.events import (
    AgencyProfile,
    NoticeAcknowledged,
    NotificationRequested,
    Payload,
    SubjectSealed,
    SubscriptionState,
)
from shared.idempotency import claim_event
from shared.kafka.consumer import DecodedRecord, UnexpectedEventError
from shared.kafka.records import header
from shared.logging import trace_context
from shared.topics import (
    AGENCY_PROFILE,
    CONTACT_POINT_DISABLED,
    NOTIFICATION_ACKNOWLEDGED,
    NOTIFICATION_REQUESTED,
    NOTIFICATION_STATUS_CHANGED,
    OPS_ALERT,
    SUBJECT_SEALED,
    SUBSCRIPTION_STATE,
    TopicSpec,
)

log = logging.getLogger(__name__)

CONSUMER_GROUP = "delivery"
CONSUMED_TOPICS: tuple[TopicSpec, ...] = (
    NOTIFICATION_REQUESTED,
    AGENCY_PROFILE,
    NOTIFICATION_ACKNOWLEDGED,
    SUBSCRIPTION_STATE,
    SUBJECT_SEALED,
)
PRODUCED_TOPICS: tuple[TopicSpec, ...] = (
    NOTIFICATION_STATUS_CHANGED,
    CONTACT_POINT_DISABLED,
    NOTIFICATION_ACKNOWLEDGED,
    OPS_ALERT,
)
"""``ops.alert.v1``: an email bounced after hand-off for a reason that is not the address's (``routes/bounces``)."""
H_REPLAYED_FROM = "cw-replayed-from"
"""Set by the ops dashboard on a dead letter it re-publishes (``dlq topic:partition:offset``): an operator's replay,
which asks for a new attempt, unlike a redelivery of the same event by Kafka."""


def contact_index(cipher: ContactCipher, normalise: Callable[[str], str], ciphertext: str) -> str:
    """The contact's blind index (to honour opt-outs), or '' if it cannot be decrypted (the send will fail)."""
    try:
        contact = cipher.decrypt(ciphertext)
    except ContactDecryptError:
        return ""
    return cipher.blind_index(normalise(contact))


class DeliveryHandlers:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        cipher: ContactCipher,
        bookkeeper: Bookkeeper,
        channels: Channels,
        clock: Callable[[], datetime],
        on_due: Callable[[], None] = lambda: None,
    ) -> None:
        """``on_due`` is called when stored notices are due at once (it wakes the dispatcher)."""
        self._pool = pool
        self._on_due = on_due
        self._cipher = cipher
        self._book = bookkeeper
        self._channels = channels
        self._clock = clock

    async def handle(self, event: CloudEvent[Payload], record: ConsumerRecord[bytes, bytes]) -> None:
        data = event.data
        replayed_from = header(record, H_REPLAYED_FROM)
        if isinstance(data, NotificationRequested) and replayed_from is not None:
            await self.replayed(event.id, event.trace_id, data, replayed_from=replayed_from)
        elif isinstance(data, NotificationRequested):
            await self.notification_requested(event.id, event.trace_id, data)
        elif isinstance(data, AgencyProfile):
            async with self._pool.acquire() as connection:
                await agencies.upsert_agency(connection, data)
        elif isinstance(data, NoticeAcknowledged):
            await self.acknowledged(event.id, data)
        elif isinstance(data, SubscriptionState):
            await self.subscription_state(data)
        elif isinstance(data, SubjectSealed):
            await self.subject_sealed(data)
        else:
            raise UnexpectedEventError.of(event, record)

    async def handle_batch(self, batch: Sequence[DecodedRecord]) -> None:
        """A fetched batch: its notification requests stored in one statement and one commit, the rest in order.

        Raising makes the runner hand every event of the batch to :meth:`handle` one by one; both are idempotent.
        """
        now = self._clock()
        requested = [
            self._new_notification(event.id, event.trace_id, event.data, now)
            for event, record in batch
            if isinstance(event.data, NotificationRequested) and header(record, H_REPLAYED_FROM) is None
        ]
        if requested:
            async with self._pool.acquire() as connection, connection.transaction():
                inserted = await self._insert(connection, requested, now)
            self._stored(requested, inserted, now)
        for event, record in batch:
            if not isinstance(event.data, NotificationRequested) or header(record, H_REPLAYED_FROM) is not None:
                with trace_context(event.trace_id):
                    await self.handle(event, record)

    async def notification_requested(self, event_id: str, trace_id: str, request: NotificationRequested) -> None:
        """Store the notice with its due time; the notification id makes a redelivery a no-op."""
        now = self._clock()
        new = self._new_notification(event_id, trace_id, request, now)
        async with self._pool.acquire() as connection, connection.transaction():
            inserted = await self._insert(connection, [new], now)
        self._stored([new], inserted, now)

    async def _insert(self, connection: Connection, new: Sequence[NewNotification], now: datetime) -> set[str]:
        """Store new notices; those about a subject sealed meanwhile end at once, unsent. Returns the new ids."""
        inserted = await notifications.insert_notifications(connection, new)
        sealed = await notifications.sealed_among(connection, sorted(inserted)) if inserted else []
        await self._book.close_sealed(connection, sealed, now=now)
        return inserted - set(sealed)

    async def replayed(
        self, event_id: str, trace_id: str, request: NotificationRequested, *, replayed_from: str
    ) -> None:
        """An operator replayed this parked notice: one new attempt if delivery gave up on it (see
        :func:`notifications.reopen_for_replay`); stored as new if it is not known at all."""
        now = self._clock()
        new = self._new_notification(event_id, trace_id, request, now)
        async with self._pool.acquire() as connection, connection.transaction():
            inserted = await self._insert(connection, [new], now)
            reopened = not inserted and await notifications.reopen_for_replay(
                connection, request.notification_id, replayed_from=replayed_from, now=now
            )
            if reopened and await notifications.sealed_among(connection, [request.notification_id]):
                await self._book.close_sealed(connection, [request.notification_id], now=now)
                reopened = False
        log.info(
            "replay of notice %s from %s: %s",
            request.notification_id,
            replayed_from,
            "stored as new" if inserted else "a new attempt" if reopened else "nothing to do (not given up on)",
        )
        if inserted or reopened:
            self._on_due()

    def _new_notification(
        self, event_id: str, trace_id: str, request: NotificationRequested, now: datetime
    ) -> NewNotification:
        channel = self._channels[request.channel]
        pattern = channel.repeat_pattern(request.kind, request.urgency)
        due = (
            due_at(
                now,
                kind=request.kind,
                urgency=request.urgency,
                timezone=request.timezone,
                quiet_start=request.quiet_hours_start,
                quiet_end=request.quiet_hours_end,
            )
            if channel.quiet_hours_apply
            else now
        )
        return NewNotification(
            request=request,
            event_id=event_id,
            trace_id=trace_id,
            contact_index=contact_index(self._cipher, channel.normalise_contact, request.contact_ciphertext),
            next_attempt_at=due,
            repeat_until=due + timedelta(seconds=pattern.window_seconds) if pattern.repeats else None,
        )

    def _stored(self, stored: Sequence[NewNotification], inserted: set[str], now: datetime) -> None:
        due_now = False
        for new in stored:
            if new.request.notification_id not in inserted:
                continue
            if new.next_attempt_at <= now:
                due_now = True
                continue
            with trace_context(new.trace_id):
                log.info(
                    "notice %s held until %s (quiet hours)",
                    new.request.notification_id,
                    new.next_attempt_at.isoformat(),
                )
        if due_now:
            self._on_due()

    async def acknowledged(self, event_id: str, data: NoticeAcknowledged) -> None:
        async with self._pool.acquire() as connection, connection.transaction():
            if not await claim_event(connection, CONSUMER_GROUP, event_id):
                return
            if data.notification_id is None:
                await self._book.acknowledge_subscription(connection, data.subscription_id, now=data.at)
                return
            notification = await notifications.get_notification(connection, data.notification_id)
            if notification is None or notification.request.subscription_id != data.subscription_id:
                log.warning("acknowledgement %s names no notification of its subscription; ignored", event_id)
                return
            await self._book.acknowledge(connection, data.notification_id, now=data.at, publish=False)

    async def subject_sealed(self, sealed: SubjectSealed) -> None:
        """Nothing more is sent about a sealed subject: waiting notices and repeats end now (see the bookkeeper)."""
        async with self._pool.acquire() as connection, connection.transaction():
            closed = await self._book.seal_subject(connection, sealed, now=self._clock())
        log.info(
            "subject %s of %s sealed: %d waiting notices ended unsent", sealed.subject_id, sealed.agency_id, closed
        )

    async def subscription_state(self, state: SubscriptionState) -> None:
        """Remember the subscription's newest status and contacts; notices it no longer wants end unsent."""
        async with self._pool.acquire() as connection, connection.transaction():
            closed = await self._book.apply_subscription_state(connection, state, now=self._clock())
        if closed:
            log.info(
                "%d waiting notices of subscription %s not sent (its state changed)", closed, state.subscription_id
            )
