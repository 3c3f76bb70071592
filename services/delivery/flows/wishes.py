"""The subscriber's (and operators') wishes: a newer subscription state, a sealed subject, an acknowledgement, a stop.

Each ends the notices it forbids at once, unsent, with their final status and the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from services.delivery.domain import SUBJECT_WAS_SEALED, SubscriptionGate, is_progress, send_blocked_reason
from services.delivery.flows.events import SOURCE, StatusEvents
from services.delivery.store import attempts, notifications, subscriptions
from services.delivery.store.notifications import NotificationRow
from shared.db import Connection
from shared.envelope import new_event as make_event
from shared.events import DeliveryStatus, NoticeAcknowledged, SubjectSealed, SubscriptionState
from shared.outbox import enqueue
from shared.topics import NOTIFICATION_ACKNOWLEDGED
from shared.vocabulary import normalise_identifier

log = logging.getLogger(__name__)


class SubscriberWishes(StatusEvents):
    async def _unwanted_reason(self, connection: Connection, row: NotificationRow) -> str | None:
        """Why the subscription's latest state forbids sending this notice now, or None."""
        return self._blocked_reason(
            row, await subscriptions.get_subscription_gate(connection, row.request.subscription_id)
        )

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
        if not await subscriptions.upsert_subscription_state(connection, state):
            return 0
        closed = 0
        for notification_id in await notifications.open_notifications_of(connection, state.subscription_id):
            row = await notifications.get_notification(connection, notification_id)
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
            attempt = await attempts.get_attempt(connection, in_flight, for_update=True)
            if attempt is not None and is_progress(attempt.status, DeliveryStatus.PERMANENT_FAILURE):
                await attempts.update_attempt(
                    connection,
                    in_flight,
                    now,
                    status=DeliveryStatus.PERMANENT_FAILURE.value,
                    error_code=reason,
                    detail=f"not sent again after a takeover: {reason}",
                    completed_at=now,
                )
        await notifications.update_notification(
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
        ids = await notifications.seal_subject(connection, sealed.agency_id, identifiers, sealed.sealed_at)
        return await self.close_sealed(connection, ids, now=now)

    async def close_sealed(self, connection: Connection, notification_ids: Sequence[str], *, now: datetime) -> int:
        """End these open notices about a sealed subject (their rows locked by the caller)."""
        for notification_id in notification_ids:
            row = await notifications.get_notification(connection, notification_id)
            if row is None:
                continue
            if row.in_flight_attempt_id is None:
                await self.close_unwanted(connection, row, SUBJECT_WAS_SEALED, now=now)
            else:
                await notifications.update_notification(
                    connection, notification_id, outcome="stopped", stop_reason=SUBJECT_WAS_SEALED, next_attempt_at=None
                )
        return len(notification_ids)

    async def acknowledge(
        self, connection: Connection, notification_id: str, *, now: datetime, publish: bool
    ) -> NotificationRow | None:
        """Stop the repeats of a notice; idempotent. ``publish`` tells the subscription service (link clicks)."""
        notification = await notifications.get_notification(connection, notification_id, for_update=True)
        if notification is None:
            return None
        if notification.acknowledged_at is not None:
            return notification
        changes: dict[str, object] = {"acknowledged_at": now}
        if notification.outcome is None:
            changes |= {"outcome": "acknowledged", "next_attempt_at": None}
        await notifications.update_notification(connection, notification_id, **changes)
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
        return await notifications.get_notification(connection, notification_id)

    async def acknowledge_subscription(self, connection: Connection, subscription_id: str, *, now: datetime) -> int:
        """An acknowledgement without a notification id (an SMS reply) stops every open urgent notice."""
        ids = await notifications.open_notifications_of(connection, subscription_id, urgent_only=True)
        for notification_id in ids:
            await self.acknowledge(connection, notification_id, now=now, publish=False)
        return len(ids)

    async def stop(self, connection: Connection, notification_id: str) -> NotificationRow | None:
        """An operator blocks a notice: no further attempt (one already at the provider cannot be recalled)."""
        notification = await notifications.get_notification(connection, notification_id, for_update=True)
        if notification is None:
            return None
        if notification.outcome is None:
            await notifications.update_notification(
                connection, notification_id, outcome="stopped", next_attempt_at=None
            )
        return await notifications.get_notification(connection, notification_id)
