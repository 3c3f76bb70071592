"""Providers' outcomes: a hand-off, a receipt (from a callback, a reconciliation or the send call itself), and
what follows from it: a repeat, a retry on the notice's schedule, the end, a disabled contact point."""

from __future__ import annotations

import logging
from datetime import datetime

from services.delivery import metrics
from services.delivery.domain import FINAL_STATUSES, Receipt, is_progress, next_repeat_at
from services.delivery.flows.claims import Claiming
from services.delivery.flows.events import SOURCE
from services.delivery.flows.group_commit import add_event
from services.delivery.store import attempts, notifications, subscriptions
from services.delivery.store.attempts import AttemptRow
from services.delivery.store.notifications import NotificationRow
from shared.db import Connection
from shared.envelope import new_event as make_event
from shared.events import ContactPointDisabled, DeliveryStatus
from shared.topics import CONTACT_POINT_DISABLED

log = logging.getLogger(__name__)


class Bookkeeper(Claiming):
    """Every bookkeeping use case (see :mod:`services.delivery.flows.events`)."""

    async def record_handoff(
        self, connection: Connection, attempt_id: str, *, provider: str, provider_message_id: str, now: datetime
    ) -> None:
        """The provider took the message: note its id, and schedule the repeat of an urgent notice."""
        locked = await attempts.lock_with_notification(connection, attempt_id)
        if locked is None:
            return
        attempt, notification = locked
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
            written = written.model_copy(update={"provider": provider, "provider_message_id": provider_message_id})
        if attempt.handed_off_at is None:
            changes["handed_off_at"] = now
            written = written.model_copy(update={"handed_off_at": now})
        progressed = is_progress(attempt.status, DeliveryStatus.SENT)
        if progressed:
            changes["status"] = DeliveryStatus.SENT.value
            written = written.model_copy(update={"status": DeliveryStatus.SENT})
        if changes:
            attempt = written.model_copy(update={"updated_at": now})  # the row as written below, not read back
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
        notification_changes: dict[str, object] = {}
        if notification.in_flight_attempt_id == attempt.attempt_id:
            next_at = None
            interval = self.scheduling.repeat_pattern(notification).interval_seconds
            if notification.outcome is None and interval is not None:
                next_at = next_repeat_at(now, repeat_until=notification.repeat_until, interval_seconds=interval)
            outcome = notification.outcome
            failures = notification.failure_count
            if self.scheduling.channels[notification.request.channel].handoff_is_verdict:
                # The provider's acceptance is the last receipt this channel gives (SMTP): the verdict.
                failures = 0
                if outcome is None and next_at is None:
                    outcome = "sent"
            notification_changes = {
                "in_flight_attempt_id": None,
                "lease_until": None,
                "next_attempt_at": next_at,
                "outcome": outcome,
                "failure_count": failures,
                "status": DeliveryStatus.SENT.value if progressed else notification.status.value,
            }
        await attempts.update_with_notification(
            connection,
            attempt.attempt_id,
            now,
            changes=changes,
            notification_id=notification.notification_id,
            notification_changes=notification_changes,
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
        locked: tuple[AttemptRow, NotificationRow] | None = None,
    ) -> DeliveryStatus | None:
        """Apply a provider's verdict on one attempt (from a callback, a reconciliation or the send call itself).

        Returns the attempt's status after it, None when the attempt is unknown. Out-of-order or repeated receipts
        change nothing. ``locked``: the attempt and its notification, when the caller already locked them.
        """
        locked = locked or await attempts.lock_with_notification(connection, attempt_id)
        if locked is None:
            return None
        attempt, notification = locked
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
                changed = await notifications.get_notification(connection, attempt.notification_id, for_update=True)
                if changed is None:
                    return None
                notification = changed
        if not is_progress(attempt.status, receipt.status):
            return attempt.status
        final = receipt.status in FINAL_STATUSES
        current = attempt.number == notification.attempt_count and notification.stop_reason is None
        # The common ending, a delivered receipt of the current attempt, writes the attempt and its notification in
        # one statement; every other receipt writes its notification below, after what else it changes.
        delivered_now = current and receipt.status is DeliveryStatus.DELIVERED and receipt.disable is None
        await attempts.update_with_notification(
            connection,
            attempt.attempt_id,
            now,
            changes={
                "status": receipt.status.value,
                "error_code": receipt.error_code,
                "detail": detail,
                "completed_at": now if final else None,
            },
            notification_id=notification.notification_id,
            notification_changes=self._delivered(notification, attempt, receipt, now) if delivered_now else {},
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
        if not current:
            # A late receipt of an older attempt (an earlier repeat), or of the last attempt of a notice already
            # ended at the subscriber's wish (whose verdict stays): history only.
            return receipt.status
        if receipt.status is DeliveryStatus.DELIVERED and not delivered_now:
            changes = self._delivered(notification, attempt, receipt, now)
            await notifications.update_notification(connection, notification.notification_id, **changes)
        elif receipt.status is DeliveryStatus.TEMPORARY_FAILURE:
            await self._temporary_failure(connection, notification, attempt, receipt, now)
        elif receipt.status in {DeliveryStatus.PERMANENT_FAILURE, DeliveryStatus.TECHNICAL_FAILURE}:
            outcome = "stopped" if receipt.disable is not None else "failed"
            reason = detail or f"{receipt.status.value} (code {receipt.error_code or 'none'})"
            await self._close(connection, notification, outcome, receipt.status, reason)
        return receipt.status

    def _delivered(
        self, notification: NotificationRow, attempt: AttemptRow, receipt: Receipt, now: datetime
    ) -> dict[str, object]:
        """What a delivered receipt of the current attempt changes in its notification (and its latency metric)."""
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
        custody = notification.request.custody
        if custody is not None:
            metrics.LATENCY.labels("delivered").observe((now - custody.feed_received_at).total_seconds())
        return changes

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
            await notifications.update_notification(connection, notification.notification_id, **in_flight)
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
            await notifications.update_notification(connection, notification.notification_id, failure_count=failures)
            reason = f"gave up after {failures} temporary failures (last code {receipt.error_code or 'none'})"
            await self._close(connection, notification, "failed", DeliveryStatus.TECHNICAL_FAILURE, reason, now=now)
            return
        await notifications.update_notification(
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
        await notifications.update_notification(
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
        newly = await subscriptions.disable_contact(
            connection,
            subscription_id=request.subscription_id,
            channel=request.channel.value,
            contact_index=notification.contact_index,
            reason=reason,
            now=now,
        )
        for other in await notifications.open_notifications_of(
            connection, request.subscription_id, channel=request.channel.value
        ):
            row = await notifications.get_notification(connection, other)
            if row is not None and row.contact_index == notification.contact_index and other != request.notification_id:
                await notifications.update_notification(connection, other, outcome="stopped", next_attempt_at=None)
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
        await add_event(connection, self._kafka.topic(CONTACT_POINT_DISABLED.name), request.subscription_id, event)
        log.info("contact point disabled (%s) for subscription %s", reason, request.subscription_id)
