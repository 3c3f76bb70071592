"""Bookkeeping of notifications and attempts: each function is one database transaction with its outbox events.

The dispatcher and the HTTP callbacks both end up here, so a receipt means the same whichever way it arrives.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from services.delivery import metrics, store
from services.delivery.domain import (
    FINAL_STATUSES,
    STOPPED_BY_OPERATOR,
    SUBJECT_WAS_SEALED,
    Receipt,
    RepeatPattern,
    RepeatPatterns,
    RetryPolicy,
    SubscriptionGate,
    attempt_reference,
    is_progress,
    next_repeat_at,
    send_blocked_reason,
)
from services.delivery.store import AttemptRow, NotificationRow
from shared.db import Connection
from shared.events import (
    ContactPointDisabled,
    DeliveryStatus,
    NoticeAcknowledged,
    NotificationStatusChanged,
    SubjectSealed,
    SubscriptionState,
    event_source,
)
from shared.events import new_event as make_event
from shared.outbox import enqueue
from shared.settings import KafkaSettings
from shared.topics import CONTACT_POINT_DISABLED, NOTIFICATION_ACKNOWLEDGED, NOTIFICATION_STATUS_CHANGED
from shared.vocabulary import Channel, normalise_identifier

log = logging.getLogger(__name__)

SOURCE = event_source("delivery")


@dataclass(frozen=True)
class Scheduling:
    """The timing rules the bookkeeping applies (from settings)."""

    retry: RetryPolicy
    repeats: RepeatPatterns
    lease_seconds: float

    def repeat_pattern(self, notification: NotificationRow) -> RepeatPattern:
        request = notification.request
        return self.repeats.of(request.kind, request.urgency, request.channel)


@dataclass(frozen=True)
class Claim:
    """An attempt recorded (and committed) before its provider call; ``resumed`` when taking over after a crash."""

    notification: NotificationRow
    attempt_id: str
    number: int
    resumed: bool


class Bookkeeper:
    def __init__(self, kafka: KafkaSettings, scheduling: Scheduling) -> None:
        self._kafka = kafka
        self.scheduling = scheduling

    # --- events -----------------------------------------------------------------------------------------------

    async def _status_event(
        self,
        connection: Connection,
        notification: NotificationRow,
        *,
        number: int,
        status: DeliveryStatus,
        provider: str | None,
        error_code: str | None,
        now: datetime,
        event_key: str,
    ) -> None:
        request = notification.request
        custody = request.custody
        data = NotificationStatusChanged(
            notification_id=request.notification_id,
            subscription_id=request.subscription_id,
            agency_id=request.agency_id,
            channel=request.channel,
            provider=provider,
            status=status,
            error_code=error_code,
            attempt=number,
            at=now,
            kind=request.kind,
            urgency=request.urgency,
            contact_masked=request.contact_masked,
            case=custody.identifier if custody else None,
            custody_event_id=custody.custody_event_id if custody else None,
            feed_received_at=custody.feed_received_at if custody else None,
        )
        event = make_event(
            data,
            source=SOURCE,
            subject=request.notification_id,
            event_id=f"{request.notification_id}:{event_key}",
            trace_id=notification.trace_id,
            at=now,
        )
        await enqueue(connection, self._kafka.topic(NOTIFICATION_STATUS_CHANGED.name), request.notification_id, event)
        metrics.NOTIFICATIONS.labels(request.channel.value, provider or "none", status.value).inc()

    # --- claiming ---------------------------------------------------------------------------------------------

    async def claim_due(self, connection: Connection, now: datetime, limit: int) -> list[Claim]:
        """Record an attempt for every due notification and lease it; the caller commits before sending."""
        claims: list[Claim] = []
        lease_until = now + timedelta(seconds=self.scheduling.lease_seconds)
        rows = await store.lock_due(connection, now, limit)
        if not rows:
            return claims
        # What decides whether each may go, read for all of them at once (two queries, not two per notice).
        gates = await store.get_subscription_gates(connection, sorted({row.request.subscription_id for row in rows}))
        disabled = await store.disabled_among(
            connection,
            [(row.request.subscription_id, row.request.channel.value, row.contact_index) for row in rows],
        )
        for row in rows:
            would_send = row.in_flight_attempt_id is not None or row.outcome is None
            reason = self._blocked_reason(row, gates.get(row.request.subscription_id)) if would_send else None
            if would_send and reason is None and row.outcome == "stopped":
                # Stopped (sealed, blocked by an operator) while an attempt was in flight: a stranded attempt the
                # provider never took must not go out now.
                reason = row.stop_reason or STOPPED_BY_OPERATOR
            if reason is not None:
                await self.close_unwanted(connection, row, reason, now=now)
                continue
            if row.in_flight_attempt_id is not None:
                # The dispatcher that recorded this attempt died (or hung) before its bookkeeping: the taker asks the
                # provider whether it has the message before it sends anything.
                await store.update_notification(connection, row.notification_id, lease_until=lease_until)
                number = row.attempt_count
                claims.append(Claim(row, row.in_flight_attempt_id, number, resumed=True))
                log.warning("taking over attempt %s after its lease ran out", row.in_flight_attempt_id)
                continue
            if row.outcome is not None:
                await store.update_notification(connection, row.notification_id, next_attempt_at=None)
                continue
            request = row.request
            if row.contact_index and (request.subscription_id, request.channel.value, row.contact_index) in disabled:
                await store.update_notification(
                    connection,
                    row.notification_id,
                    next_attempt_at=None,
                    outcome="stopped",
                    stop_reason="contact-disabled",
                )
                continue
            number = row.attempt_count + 1
            attempt_id = attempt_reference(row.notification_id, number)
            purpose = row.next_purpose or ("first" if number == 1 else "retry" if row.failure_count else "repeat")
            await store.insert_attempt(
                connection,
                attempt_id=attempt_id,
                notification_id=row.notification_id,
                number=number,
                purpose=purpose,
                channel=request.channel.value,
                contact_masked=request.contact_masked,
                now=now,
            )
            await store.update_notification(
                connection,
                row.notification_id,
                in_flight_attempt_id=attempt_id,
                lease_until=lease_until,
                attempt_count=number,
                first_attempt_at=row.first_attempt_at or now,
                next_attempt_at=None,
                next_purpose=None,
                status=DeliveryStatus.SENDING.value,
            )
            await self._status_event(
                connection,
                row,
                number=number,
                status=DeliveryStatus.SENDING,
                provider=None,
                error_code=None,
                now=now,
                event_key=f"a{number}:sending",
            )
            claims.append(Claim(row, attempt_id, number, resumed=False))
        return claims

    # --- the subscriber's wishes ------------------------------------------------------------------------------

    async def _unwanted_reason(self, connection: Connection, row: NotificationRow) -> str | None:
        """Why the subscription's latest state forbids sending this notice now, or None."""
        return self._blocked_reason(row, await store.get_subscription_gate(connection, row.request.subscription_id))

    @staticmethod
    def _blocked_reason(row: NotificationRow, gate: SubscriptionGate | None) -> str | None:
        request = row.request
        return send_blocked_reason(
            gate, kind=request.kind, channel=request.channel, contact_masked=request.contact_masked
        )

    async def apply_subscription_state(self, connection: Connection, state: SubscriptionState, *, now: datetime) -> int:
        """Record a subscription's newer state and end at once the waiting notices it forbids; returns how many.

        An older or repeated version changes nothing. A notice with an attempt in flight is left to the dispatcher,
        which checks again before it would send anything more.
        """
        if not await store.upsert_subscription_state(connection, state):
            return 0
        closed = 0
        for notification_id in await store.open_notifications_of(connection, state.subscription_id):
            row = await store.get_notification(connection, notification_id)
            if row is None or row.in_flight_attempt_id is not None:
                continue
            reason = await self._unwanted_reason(connection, row)
            if reason is not None:
                await self.close_unwanted(connection, row, reason, now=now)
                closed += 1
        return closed

    async def close_unwanted(
        self, connection: Connection, notification: NotificationRow, reason: str, *, now: datetime
    ) -> None:
        """End a notice unsent because the subscriber stopped it (or cancelled): final status, reason, event.

        An attempt left in flight by a crashed dispatcher is not sent again either; it is closed with the reason.
        """
        in_flight = notification.in_flight_attempt_id
        if in_flight is not None:
            attempt = await store.get_attempt(connection, in_flight, for_update=True)
            if attempt is not None and is_progress(attempt.status, DeliveryStatus.PERMANENT_FAILURE):
                await store.update_attempt(
                    connection,
                    in_flight,
                    now,
                    status=DeliveryStatus.PERMANENT_FAILURE.value,
                    error_code=reason,
                    detail=f"not sent again after a takeover: {reason}",
                    completed_at=now,
                )
        await store.update_notification(
            connection,
            notification.notification_id,
            outcome=notification.outcome or "stopped",
            status=DeliveryStatus.PERMANENT_FAILURE.value,
            stop_reason=reason,
            next_attempt_at=None,
            in_flight_attempt_id=None,
            lease_until=None,
        )
        await self._status_event(
            connection,
            notification,
            number=notification.attempt_count,
            status=DeliveryStatus.PERMANENT_FAILURE,
            provider=None,
            error_code=reason,
            now=now,
            event_key="unwanted",
        )
        log.info("notice %s not sent: %s", notification.notification_id, reason)

    async def seal_subject(self, connection: Connection, sealed: SubjectSealed, *, now: datetime) -> int:
        """Nothing more about a sealed subject: its waiting notices and repeats end unsent; returns how many.

        An attempt already in flight cannot be recalled; its notice ends with it (no repeat), and if it is stranded
        the taker does not send it.
        """
        identifiers = [(i.kind.value, normalise_identifier(i.value)) for i in sealed.identifiers]
        ids = await store.seal_subject(connection, sealed.agency_id, identifiers, sealed.sealed_at)
        return await self.close_sealed(connection, ids, now=now)

    async def close_sealed(self, connection: Connection, notification_ids: Sequence[str], *, now: datetime) -> int:
        """End these open notices about a sealed subject (their rows locked by the caller)."""
        for notification_id in notification_ids:
            row = await store.get_notification(connection, notification_id)
            if row is None:
                continue
            if row.in_flight_attempt_id is None:
                await self.close_unwanted(connection, row, SUBJECT_WAS_SEALED, now=now)
            else:
                await store.update_notification(
                    connection, notification_id, outcome="stopped", stop_reason=SUBJECT_WAS_SEALED, next_attempt_at=None
                )
        return len(notification_ids)

    # --- outcomes ---------------------------------------------------------------------------------------------

    async def record_handoff(
        self, connection: Connection, attempt_id: str, *, provider: str, provider_message_id: str, now: datetime
    ) -> None:
        """The provider took the message: note its id, and schedule the repeat of an urgent notice."""
        attempt = await store.get_attempt(connection, attempt_id, for_update=True)
        if attempt is None:
            return
        notification = await store.get_notification(connection, attempt.notification_id, for_update=True)
        if notification is None:
            return
        await self._handed_off(
            connection, notification, attempt, provider=provider, provider_message_id=provider_message_id, now=now
        )

    async def _handed_off(
        self,
        connection: Connection,
        notification: NotificationRow,
        attempt: AttemptRow,
        *,
        provider: str | None,
        provider_message_id: str | None,
        now: datetime,
    ) -> AttemptRow:
        changes: dict[str, object] = {}
        written = attempt
        if attempt.provider_message_id is None and provider_message_id is not None:
            changes |= {"provider": provider, "provider_message_id": provider_message_id}
            written = replace(written, provider=provider, provider_message_id=provider_message_id)
        if attempt.handed_off_at is None:
            changes["handed_off_at"] = now
            written = replace(written, handed_off_at=now)
        progressed = is_progress(attempt.status, DeliveryStatus.SENT)
        if progressed:
            changes["status"] = DeliveryStatus.SENT.value
            written = replace(written, status=DeliveryStatus.SENT)
        if changes:
            await store.update_attempt(connection, attempt.attempt_id, now, **changes)
            attempt = replace(written, updated_at=now)  # the row as just written, without reading it back
        if progressed:
            await self._status_event(
                connection,
                notification,
                number=attempt.number,
                status=DeliveryStatus.SENT,
                provider=attempt.provider,
                error_code=None,
                now=now,
                event_key=f"a{attempt.number}:sent",
            )
            custody = notification.request.custody
            if custody is not None and attempt.number == 1:
                metrics.LATENCY.labels("handoff").observe((now - custody.feed_received_at).total_seconds())
        if notification.in_flight_attempt_id == attempt.attempt_id:
            next_at = None
            interval = self.scheduling.repeat_pattern(notification).interval_seconds
            if notification.outcome is None and interval is not None:
                next_at = next_repeat_at(now, repeat_until=notification.repeat_until, interval_seconds=interval)
            outcome = notification.outcome
            failures = notification.failure_count
            if notification.request.channel is Channel.EMAIL:
                # SMTP acceptance is the last receipt email gives us: the verdict, as "delivered" is for SMS.
                failures = 0
                if outcome is None and next_at is None:
                    outcome = "sent"
            await store.update_notification(
                connection,
                notification.notification_id,
                in_flight_attempt_id=None,
                lease_until=None,
                next_attempt_at=next_at,
                outcome=outcome,
                failure_count=failures,
                status=DeliveryStatus.SENT.value if progressed else notification.status.value,
            )
        return attempt

    async def apply_receipt(
        self,
        connection: Connection,
        attempt_id: str,
        receipt: Receipt,
        *,
        now: datetime,
        provider: str | None = None,
        provider_message_id: str | None = None,
        detail: str | None = None,
    ) -> bool:
        """Apply a provider's verdict on one attempt (from a callback, a reconciliation or the send call itself).

        Returns False when the attempt is unknown. Out-of-order or repeated receipts change nothing.
        """
        attempt = await store.get_attempt(connection, attempt_id, for_update=True)
        if attempt is None:
            return False
        notification = await store.get_notification(connection, attempt.notification_id, for_update=True)
        if notification is None:
            return False
        handed_off = receipt.status in {DeliveryStatus.SENT, DeliveryStatus.DELIVERED} or (
            receipt.status is DeliveryStatus.SENDING and provider_message_id is not None
        )
        if handed_off or (provider_message_id is not None and receipt.status in FINAL_STATUSES):
            # A receipt can beat the dispatcher's own bookkeeping: the hand-off evidently happened.
            ends_flight = notification.in_flight_attempt_id == attempt.attempt_id
            attempt = await self._handed_off(
                connection, notification, attempt, provider=provider, provider_message_id=provider_message_id, now=now
            )
            if ends_flight:  # only then did the notification change
                notification = await store.get_notification(connection, attempt.notification_id, for_update=True)
                if notification is None:
                    return False
        if not is_progress(attempt.status, receipt.status):
            return True
        final = receipt.status in FINAL_STATUSES
        await store.update_attempt(
            connection,
            attempt.attempt_id,
            now,
            status=receipt.status.value,
            error_code=receipt.error_code,
            detail=detail,
            completed_at=now if final else None,
        )
        await self._status_event(
            connection,
            notification,
            number=attempt.number,
            status=receipt.status,
            provider=attempt.provider or provider,
            error_code=receipt.error_code,
            now=now,
            event_key=f"a{attempt.number}:{receipt.status.value}",
        )
        if receipt.disable is not None:
            await self._disable_contact(connection, notification, receipt, now)
        if attempt.number != notification.attempt_count or notification.stop_reason is not None:
            # A late receipt of an older attempt (an earlier repeat), or of the last attempt of a notice already
            # ended at the subscriber's wish (whose verdict stays): history only.
            return True
        if receipt.status is DeliveryStatus.DELIVERED:
            await self._delivered(connection, notification, attempt, receipt, now)
        elif receipt.status is DeliveryStatus.TEMPORARY_FAILURE:
            await self._temporary_failure(connection, notification, attempt, receipt, now)
        elif receipt.status in {DeliveryStatus.PERMANENT_FAILURE, DeliveryStatus.TECHNICAL_FAILURE}:
            outcome = "stopped" if receipt.disable is not None else "failed"
            reason = detail or f"{receipt.status.value} (code {receipt.error_code or 'none'})"
            await self._close(connection, notification, outcome, receipt.status, reason)
        return True

    async def _delivered(
        self,
        connection: Connection,
        notification: NotificationRow,
        attempt: AttemptRow,
        receipt: Receipt,
        now: datetime,
    ) -> None:
        changes: dict[str, object] = {"failure_count": 0, "status": DeliveryStatus.DELIVERED.value}
        next_at = notification.next_attempt_at
        unconfirmed_interval = self.scheduling.repeat_pattern(notification).unconfirmed_interval_seconds
        if receipt.unconfirmed and unconfirmed_interval is not None and next_at is not None:
            # A machine took the message, or a person hung up without the PIN: call back later than after no answer.
            next_at = next_repeat_at(
                attempt.handed_off_at or now,
                repeat_until=notification.repeat_until,
                interval_seconds=unconfirmed_interval,
            )
            changes["next_attempt_at"] = next_at
        if notification.outcome is None and next_at is None:
            changes["outcome"] = "delivered"
        await store.update_notification(connection, notification.notification_id, **changes)
        custody = notification.request.custody
        if custody is not None:
            metrics.LATENCY.labels("delivered").observe((now - custody.feed_received_at).total_seconds())

    async def _temporary_failure(
        self,
        connection: Connection,
        notification: NotificationRow,
        attempt: AttemptRow,
        receipt: Receipt,
        now: datetime,
    ) -> None:
        failures = notification.failure_count + 1
        in_flight: dict[str, object] = {}
        if notification.in_flight_attempt_id == attempt.attempt_id:
            in_flight = {"in_flight_attempt_id": None, "lease_until": None}
        if notification.outcome is not None:
            await store.update_notification(connection, notification.notification_id, **in_flight)
            return
        retry_at = self.scheduling.retry.next_try(
            now, failures=failures, first_attempt_at=notification.first_attempt_at or now
        )
        pattern = self.scheduling.repeat_pattern(notification)
        if retry_at is not None and pattern.failures_wait_for_repeat and pattern.interval_seconds is not None:
            retry_at = next_repeat_at(
                now, repeat_until=notification.repeat_until, interval_seconds=pattern.interval_seconds
            )
        if retry_at is None:
            await store.update_notification(connection, notification.notification_id, failure_count=failures)
            reason = f"gave up after {failures} temporary failures (last code {receipt.error_code or 'none'})"
            await self._close(connection, notification, "failed", DeliveryStatus.TECHNICAL_FAILURE, reason, now=now)
            return
        await store.update_notification(
            connection,
            notification.notification_id,
            failure_count=failures,
            next_attempt_at=retry_at,
            status=DeliveryStatus.TEMPORARY_FAILURE.value,
            **in_flight,
        )

    async def _close(
        self,
        connection: Connection,
        notification: NotificationRow,
        outcome: str,
        status: DeliveryStatus,
        reason: str,
        *,
        now: datetime | None = None,
    ) -> None:
        """Finish a notification for good; ``failed`` ones are parked on the dead-letter topic by the dispatcher."""
        await store.update_notification(
            connection,
            notification.notification_id,
            outcome=outcome,
            status=status.value,
            next_attempt_at=None,
            in_flight_attempt_id=None,
            lease_until=None,
            parked_reason=reason if outcome == "failed" else None,
        )
        if now is not None and status is DeliveryStatus.TECHNICAL_FAILURE:
            await self._status_event(
                connection,
                notification,
                number=notification.attempt_count,
                status=status,
                provider=None,
                error_code=None,
                now=now,
                event_key="parked",
            )

    async def _disable_contact(
        self, connection: Connection, notification: NotificationRow, receipt: Receipt, now: datetime
    ) -> None:
        request = notification.request
        reason = receipt.disable or "opted_out"
        newly = await store.disable_contact(
            connection,
            subscription_id=request.subscription_id,
            channel=request.channel.value,
            contact_index=notification.contact_index,
            reason=reason,
            now=now,
        )
        for other in await store.open_notifications_of(
            connection, request.subscription_id, channel=request.channel.value
        ):
            row = await store.get_notification(connection, other)
            if row is not None and row.contact_index == notification.contact_index and other != request.notification_id:
                await store.update_notification(connection, other, outcome="stopped", next_attempt_at=None)
        if not newly:
            return
        data = ContactPointDisabled(
            subscription_id=request.subscription_id, channel=request.channel, reason=reason, at=now
        )
        event = make_event(
            data,
            source=SOURCE,
            subject=request.subscription_id,
            event_id=f"{request.notification_id}:disabled",
            trace_id=notification.trace_id,
            at=now,
        )
        await enqueue(connection, self._kafka.topic(CONTACT_POINT_DISABLED.name), request.subscription_id, event)
        log.info("contact point disabled (%s) for subscription %s", reason, request.subscription_id)

    # --- acknowledgement and stop -----------------------------------------------------------------------------

    async def acknowledge(
        self, connection: Connection, notification_id: str, *, now: datetime, publish: bool
    ) -> NotificationRow | None:
        """Stop the repeats of a notice; idempotent. ``publish`` tells the subscription service (link clicks)."""
        notification = await store.get_notification(connection, notification_id, for_update=True)
        if notification is None:
            return None
        if notification.acknowledged_at is not None:
            return notification
        changes: dict[str, object] = {"acknowledged_at": now}
        if notification.outcome is None:
            changes |= {"outcome": "acknowledged", "next_attempt_at": None}
        await store.update_notification(connection, notification_id, **changes)
        if publish:
            request = notification.request
            data = NoticeAcknowledged(
                subscription_id=request.subscription_id,
                notification_id=notification_id,
                channel=request.channel,
                at=now,
            )
            event = make_event(
                data,
                source=SOURCE,
                subject=request.subscription_id,
                event_id=f"{notification_id}:acknowledged",
                trace_id=notification.trace_id,
                at=now,
            )
            await enqueue(connection, self._kafka.topic(NOTIFICATION_ACKNOWLEDGED.name), request.subscription_id, event)
        return await store.get_notification(connection, notification_id)

    async def acknowledge_subscription(self, connection: Connection, subscription_id: str, *, now: datetime) -> int:
        """An acknowledgement without a notification id (an SMS reply) stops every open urgent notice."""
        ids = await store.open_notifications_of(connection, subscription_id, urgent_only=True)
        for notification_id in ids:
            await self.acknowledge(connection, notification_id, now=now, publish=False)
        return len(ids)

    async def stop(self, connection: Connection, notification_id: str) -> NotificationRow | None:
        """An operator blocks a notice: no further attempt (one already at the provider cannot be recalled)."""
        notification = await store.get_notification(connection, notification_id, for_update=True)
        if notification is None:
            return None
        if notification.outcome is None:
            await store.update_notification(connection, notification_id, outcome="stopped", next_attempt_at=None)
        return await store.get_notification(connection, notification_id)
