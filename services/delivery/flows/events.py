"""The bookkeeping's base: the timing rules it applies, and the ``notification.status-changed.v1`` it records.

The bookkeeping (``Bookkeeper``) is one database transaction per use case with its outbox events, built up by
concern: events here, the subscriber's wishes (``wishes``), claiming due notices (``claims``), providers' outcomes
(``outcomes``). The dispatcher and the HTTP callbacks both end up there, so a receipt means the same whichever way
it arrives.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.delivery import metrics
from services.delivery.channels.registry import Channels
from services.delivery.domain import NoticeRetrySchedule, RepeatPattern
from services.delivery.flows.group_commit import add_event
from services.delivery.store.notifications import NotificationRow
from shared.db import Connection
from shared.envelope import event_source
from shared.envelope import new_event as make_event
from shared.events import DeliveryStatus, NotificationStatusChanged
from shared.settings import KafkaSettings
from shared.topics import NOTIFICATION_STATUS_CHANGED

SOURCE = event_source("delivery")


@dataclass(frozen=True)
class Scheduling:
    """The timing rules the bookkeeping applies (from settings), and the channels whose repeat patterns it reads."""

    retry: NoticeRetrySchedule
    channels: Channels
    lease_seconds: float

    def repeat_pattern(self, notification: NotificationRow) -> RepeatPattern:
        request = notification.request
        return self.channels[request.channel].repeat_pattern(request.kind, request.urgency)


@dataclass(frozen=True)
class Claim:
    """An attempt recorded (and committed) before its provider call; ``resumed`` when taking over after a crash."""

    notification: NotificationRow
    attempt_id: str
    number: int
    resumed: bool


class StatusEvents:
    def __init__(self, kafka: KafkaSettings, scheduling: Scheduling) -> None:
        self._kafka = kafka
        self.scheduling = scheduling

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
        """Tell operators (and the metrics) of a status change from the hand-off on (``sending`` is not published)."""
        request = notification.request
        metrics.NOTIFICATIONS.labels(request.channel.value, provider or "none", status.value).inc()
        if status is DeliveryStatus.SENDING:
            return  # a claim's attempt: ``sent`` follows within the provider call, and operators read from there on
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
        await add_event(connection, self._kafka.topic(NOTIFICATION_STATUS_CHANGED.name), request.notification_id, event)
