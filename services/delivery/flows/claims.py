"""Claiming due notices: an attempt recorded and leased for each, or the notice ended if it may no longer go."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from services.delivery.domain import STOPPED_BY_OPERATOR, attempt_reference
from services.delivery.flows.events import Claim
from services.delivery.flows.wishes import SubscriberWishes
from services.delivery.store import attempts, notifications, subscriptions
from shared.db import Connection
from shared.events import DeliveryStatus

log = logging.getLogger(__name__)


class Claiming(SubscriberWishes):
    async def claim_due(self, connection: Connection, now: datetime, limit: int) -> list[Claim]:
        """Record an attempt for every due notification and lease it; the caller commits before sending."""
        claims: list[Claim] = []
        lease_until = now + timedelta(seconds=self.scheduling.lease_seconds)
        rows = await notifications.lock_due(connection, now, limit)
        if not rows:
            return claims
        # What decides whether each may go, read for all of them at once (two queries, not two per notice).
        gates = await subscriptions.get_subscription_gates(
            connection, sorted({row.request.subscription_id for row in rows})
        )
        disabled = await subscriptions.disabled_among(
            connection,
            [(row.request.subscription_id, row.request.channel.value, row.contact_index) for row in rows],
        )
        new_attempts: list[attempts.NewAttempt] = []
        started: list[tuple[str, str, int, datetime]] = []
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
                await notifications.update_notification(connection, row.notification_id, lease_until=lease_until)
                number = row.attempt_count
                claims.append(Claim(row, row.in_flight_attempt_id, number, resumed=True))
                log.warning("taking over attempt %s after its lease ran out", row.in_flight_attempt_id)
                continue
            if row.outcome is not None:
                await notifications.update_notification(connection, row.notification_id, next_attempt_at=None)
                continue
            request = row.request
            if row.contact_index and (request.subscription_id, request.channel.value, row.contact_index) in disabled:
                await notifications.update_notification(
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
            new_attempts.append(
                attempts.NewAttempt(
                    attempt_id=attempt_id,
                    notification_id=row.notification_id,
                    number=number,
                    purpose=purpose,
                    channel=request.channel.value,
                    contact_masked=request.contact_masked,
                )
            )
            started.append((row.notification_id, attempt_id, number, row.first_attempt_at or now))
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
        await attempts.insert_attempts(connection, new_attempts, now)
        await notifications.start_attempts(connection, started, lease_until)
        return claims
