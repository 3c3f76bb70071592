"""What the dashboard pages and its JSON API show: one model per section, rendered as HTML or returned as JSON."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from services.ops.alerts.domain import Alert
from services.ops.deliveries.domain import Acknowledgement, ChartColumn, Failure, NoticeState, StatusEvent
from services.ops.feeds.domain import FeedState
from services.ops.overrides.domain import Override
from services.ops.pipeline.domain import DeadLetter
from services.ops.storms.domain import StormHold


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


class NotificationSummary(NoticeState):
    case: str | None


class DeliverySection(BaseModel):
    last_hour: list[CountsRow]
    last_day: list[CountsRow]
    latency: list[LatencyStats]
    retries_in_flight: int
    hourly: list[ChartColumn]
    newest_failures: list[Failure]
    newest_notifications: list[NotificationSummary]


class Feed(FeedState):
    quiet_minutes: int | None


class FeedsSection(BaseModel):
    feeds: list[Feed]
    error: str | None
    checked_at: datetime | None


class Lag(BaseModel):
    group: str
    topic: str
    lag: int


class DeadLetterView(DeadLetter):
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


class HistoryEntry(StatusEvent):
    """A line of a notice's history; a call's line also says how the call went."""

    call_status: str | None = None
    answered_by: str | None = None


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
    acknowledged: Acknowledgement | None = None
    delivery_error: str | None = None


class ActionResult(BaseModel):
    ok: bool
    message: str


class OverrideResult(ActionResult):
    """The answer to an override: ``ok`` only when it changed the status (notices go out)."""

    override: Override | None
