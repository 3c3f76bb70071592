"""What the dashboard pages and its JSON API show: one model per section, rendered as HTML or returned as JSON."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from services.ops.domain import Override, StormHold


class CountsRow(BaseModel):
    channel: str
    provider: str
    requested: int
    sent: int
    delivered: int
    failed: int
    by_status: dict[str, int]


class LatencyStats(BaseModel):
    stage: str
    count: int
    p50_seconds: float | None
    p90_seconds: float | None
    p99_seconds: float | None


class ChartColumn(BaseModel):
    x: float
    width: float
    delivered_y: float
    delivered_height: float
    failed_y: float
    failed_height: float
    label: str
    title: str


class NotificationSummary(BaseModel):
    notification_id: str
    subscription_id: str
    agency_id: str
    channel: str
    provider: str | None
    status: str
    error_code: str | None
    attempt: int
    kind: str | None
    urgency: str | None
    contact_masked: str | None
    case: str | None
    custody_event_id: str | None
    feed_received_at: datetime | None
    first_at: datetime
    last_at: datetime


class Failure(BaseModel):
    notification_id: str
    agency_id: str
    channel: str
    provider: str | None
    status: str
    error_code: str | None
    attempt: int
    at: datetime
    case: str | None


class DeliverySection(BaseModel):
    last_hour: list[CountsRow]
    last_day: list[CountsRow]
    latency: list[LatencyStats]
    retries_in_flight: int
    hourly: list[ChartColumn]
    newest_failures: list[Failure]
    newest_notifications: list[NotificationSummary]


class Feed(BaseModel):
    agency_id: str
    name: str
    last_feed_at: datetime | None
    quiet_minutes: int | None
    records_accepted: int
    records_rejected: int
    in_custody: int
    expected_feed_interval_minutes: int
    notices_paused: bool | None
    stale: bool
    stale_since: datetime | None
    checked_at: datetime


class FeedsSection(BaseModel):
    feeds: list[Feed]
    error: str | None
    checked_at: datetime | None


class Lag(BaseModel):
    group: str
    topic: str
    lag: int


class DeadLetterView(BaseModel):
    topic: str
    partition: int
    offset: int
    timestamp: datetime
    original_topic: str | None
    error: str | None
    event_type: str | None
    event_id: str | None
    replayed_by: str | None
    replayed_at: datetime | None


class DeadLetterQueue(BaseModel):
    group: str
    topic: str
    size: int
    newest: list[DeadLetterView]


class PipelineSection(BaseModel):
    lag: list[Lag]
    dead_letter_queues: list[DeadLetterQueue]
    error: str | None
    checked_at: datetime | None


class Alert(BaseModel):
    source: str
    kind: str
    agency_id: str
    message: str
    at: datetime


class StormsSection(BaseModel):
    """Held storms waiting for a decision (oldest first) and the newest decided ones."""

    holding: list[StormHold]
    decided: list[StormHold]
    error: str | None
    checked_at: datetime | None


class Dashboard(BaseModel):
    generated_at: datetime
    delivery: DeliverySection
    feeds: FeedsSection
    pipeline: PipelineSection
    alerts: list[Alert]
    storms: StormsSection


class HistoryEntry(BaseModel):
    event_id: str
    status: str
    provider: str | None
    error_code: str | None
    attempt: int
    at: datetime
    latency_seconds: float | None


class Block(BaseModel):
    """An admin's attempt to block a notice, from the audit log (delivery keeps no reason)."""

    at: datetime
    username: str
    outcome: str
    reason: str | None
    message: str | None


class NotificationDetail(BaseModel):
    notification: NotificationSummary
    history: list[HistoryEntry]
    blocks: list[Block]


class AuditEntry(BaseModel):
    at: datetime
    username: str
    action: str
    target: str
    outcome: str
    detail: dict[str, object]


class ActionResult(BaseModel):
    ok: bool
    message: str


class OverrideResult(ActionResult):
    """The answer to an override: ``ok`` only when it changed the status (notices go out)."""

    override: Override | None
