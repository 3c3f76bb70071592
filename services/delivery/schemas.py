"""HTTP request and response models of the delivery service (contacts only ever masked)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from services.delivery.store.attempts import AttemptRow
from services.delivery.store.notifications import NotificationRow
from shared.events import DeliveryStatus, NotificationKind, SubjectIdentifier
from shared.vocabulary import Channel, Language, Urgency


class AttemptView(BaseModel):
    model_config = ConfigDict(frozen=True)

    attempt_id: str
    number: int
    purpose: str
    channel: Channel
    contact: str
    provider: str | None
    provider_message_id: str | None
    status: DeliveryStatus
    error_code: str | None
    detail: str | None
    created_at: datetime
    handed_off_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime

    @classmethod
    def of(cls, row: AttemptRow) -> AttemptView:
        """The stored attempt as operators see it (its contact only ever masked)."""
        return cls.model_validate(row.model_dump() | {"contact": row.contact_masked})


class NotificationView(BaseModel):
    model_config = ConfigDict(frozen=True)

    notification_id: str
    kind: NotificationKind
    subscription_id: str
    agency_id: str
    channel: Channel
    urgency: Urgency
    language: Language
    contact: str
    case: SubjectIdentifier | None
    custody_event_id: str | None
    status: DeliveryStatus
    outcome: str | None
    next_attempt_at: datetime | None
    attempt_count: int
    acknowledged_at: datetime | None
    parked_reason: str | None
    stop_reason: str | None = Field(
        default=None, description="Why the notice ended unsent: stopped-by-subscriber, subscription-cancelled, ..."
    )
    created_at: datetime
    updated_at: datetime
    attempts: list[AttemptView]

    @classmethod
    def of(cls, row: NotificationRow, attempts: list[AttemptRow]) -> NotificationView:
        request = row.request
        return cls(
            notification_id=row.notification_id,
            kind=request.kind,
            subscription_id=request.subscription_id,
            agency_id=request.agency_id,
            channel=request.channel,
            urgency=request.urgency,
            language=request.language,
            contact=request.contact_masked,
            case=request.custody.identifier if request.custody else None,
            custody_event_id=request.custody.custody_event_id if request.custody else None,
            status=row.status,
            outcome=row.outcome,
            next_attempt_at=row.next_attempt_at,
            attempt_count=row.attempt_count,
            acknowledged_at=row.acknowledged_at,
            parked_reason=row.parked_reason,
            stop_reason=row.stop_reason,
            created_at=row.created_at,
            updated_at=row.updated_at,
            attempts=[AttemptView.of(attempt) for attempt in attempts],
        )


class NotificationList(BaseModel):
    notifications: list[NotificationView]


class CallbackResult(BaseModel):
    attempt_id: str
    status: DeliveryStatus
