"""What ops decides about notices, without I/O: counts and latency, the hourly chart, safe display, blocking, and
how a call's progress reads (voice attempts are shown like any other channel's, with what only calls have)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from shared.events import DeliveryStatus
from shared.logging import redact
from shared.vocabulary import Channel

FAILURE_STATUSES = frozenset(
    {DeliveryStatus.TEMPORARY_FAILURE, DeliveryStatus.PERMANENT_FAILURE, DeliveryStatus.TECHNICAL_FAILURE}
)
FAILED = frozenset(status.value for status in FAILURE_STATUSES)
ENDED_STATUSES = frozenset({DeliveryStatus.DELIVERED.value, DeliveryStatus.PERMANENT_FAILURE.value})
"""A notice in one of these states has ended: nothing left to block."""
LATENCY_STAGES: dict[DeliveryStatus, str] = {
    DeliveryStatus.SENT: "feed_to_handoff",
    DeliveryStatus.DELIVERED: "feed_to_delivered",
}
BLOCK_ACTION = "block_notice"


def latency_seconds(status: DeliveryStatus, at: datetime, feed_received_at: datetime | None) -> float | None:
    """Feed-to-hand-off (``sent``) or feed-to-delivered latency of one status change; None for other statuses."""
    if status not in LATENCY_STAGES or feed_received_at is None:
        return None
    return max(0.0, (at - feed_received_at).total_seconds())


def display_safe(text: str | None) -> str | None:
    """Contacts reach ops only masked; should a full phone number or email ever arrive, it is never shown."""
    return None if text is None else redact(text)


# --- What ops keeps of each notice (rows of its database) --------------------------------------------------------


class NoticeState(BaseModel):
    """A notice's current state, as delivery last reported it (its case apart: stored and shown differently)."""

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
    custody_event_id: str | None
    feed_received_at: datetime | None
    first_at: datetime
    last_at: datetime


class SeenNotification(NoticeState):
    """A row of ``notifications``."""

    case_kind: str | None
    case_value: str | None

    @property
    def case_label(self) -> str | None:
        return f"{self.case_kind} {self.case_value}" if self.case_value else None


class StatusEvent(BaseModel):
    """One status change of a notice: a line of its history."""

    event_id: str
    status: str
    provider: str | None
    error_code: str | None
    attempt: int
    at: datetime
    latency_seconds: float | None


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


class HourlyOutcome(BaseModel):
    hour: datetime
    delivered: int
    failed: int


# --- Counts and the hourly chart ------------------------------------------------------------------------------------


class ChannelCounts(BaseModel):
    channel: str
    provider: str
    counts: dict[str, int]

    @property
    def requested(self) -> int:
        return self.counts.get(DeliveryStatus.CREATED, 0)

    @property
    def sent(self) -> int:
        return self.counts.get(DeliveryStatus.SENT, 0)

    @property
    def delivered(self) -> int:
        return self.counts.get(DeliveryStatus.DELIVERED, 0)

    @property
    def failed(self) -> int:
        return sum(self.counts.get(status, 0) for status in FAILURE_STATUSES)


def group_counts(rows: Iterable[tuple[str, str | None, str, int]]) -> list[ChannelCounts]:
    """(channel, provider, status, count) rows into one line per channel and provider, in a stable order."""
    grouped: dict[tuple[str, str], dict[str, int]] = {}
    for channel, provider, status, count in rows:
        counts = grouped.setdefault((channel, provider or "—"), {})
        counts[status] = counts.get(status, 0) + count
    return [
        ChannelCounts(channel=channel, provider=provider, counts=counts)
        for (channel, provider), counts in sorted(grouped.items())
    ]


class Bar(BaseModel):
    label: str
    delivered: int
    failed: int


class ChartColumn(BaseModel):
    """One column of the hourly chart, already in SVG coordinates."""

    x: float
    width: float
    delivered_y: float
    delivered_height: float
    failed_y: float
    failed_height: float
    label: str
    title: str


def chart_columns(bars: Sequence[Bar], *, width: float = 720, height: float = 120) -> list[ChartColumn]:
    """Stacked columns (delivered below, failed on top) scaled to the tallest; an empty chart is flat, not an error."""
    if not bars:
        return []
    peak = max([bar.delivered + bar.failed for bar in bars] + [1])
    slot = width / len(bars)
    columns = []
    for index, bar in enumerate(bars):
        delivered_height = height * bar.delivered / peak
        failed_height = height * bar.failed / peak
        columns.append(
            ChartColumn(
                x=round(index * slot + 1, 2),
                width=round(max(slot - 2, 1), 2),
                delivered_y=round(height - delivered_height, 2),
                delivered_height=round(delivered_height, 2),
                failed_y=round(height - delivered_height - failed_height, 2),
                failed_height=round(failed_height, 2),
                label=bar.label,
                title=f"{bar.label}: {bar.delivered} delivered, {bar.failed} failed",
            )
        )
    return columns


# --- What delivery says of a notice (its operator API) ---------------------------------------------------------------


class DeliveryAttempt(BaseModel):
    """One attempt as delivery records it; never its contact field."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    number: int
    channel: str
    provider: str | None = None
    status: str
    error_code: str | None = None
    detail: str | None = None
    handed_off_at: datetime | None = None
    completed_at: datetime | None = None


class DeliveryNotice(BaseModel):
    """A notice as delivery holds it (sent or not yet: quiet hours, a paused agency, a retry); never its contact."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    notification_id: str
    subscription_id: str
    agency_id: str
    channel: str
    kind: str | None = None
    urgency: str | None = None
    status: str
    outcome: str | None = None
    attempt_count: int = 0
    case: dict[str, str] | None = None
    custody_event_id: str | None = None
    acknowledged_at: datetime | None = None
    created_at: datetime
    updated_at: datetime
    attempts: list[DeliveryAttempt] = Field(default_factory=list)

    @property
    def case_label(self) -> str | None:
        return f"{self.case['kind']} {self.case['value']}" if self.case else None


class StoppedNotice(BaseModel):
    """The part of delivery's answer to a stop that ops shows; never its contact field."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    notification_id: str
    status: str
    outcome: str | None = None
    stop_reason: str | None = None
    attempt_count: int = 0


def block_outcome(notice: StoppedNotice) -> tuple[bool, str]:
    """(blocked?, what to tell the operator) from delivery's answer: stop only blocks a notice still open."""
    if notice.outcome != "stopped":
        return False, (
            f"Not blocked: notice {notice.notification_id} had already ended ({notice.outcome or notice.status})."
        )
    message = f"Blocked notice {notice.notification_id}: no further attempts."
    if notice.status in {DeliveryStatus.SENDING, DeliveryStatus.SENT}:
        message += f" An attempt already with the provider ({notice.status}) cannot be recalled."
    return True, message


# --- Calls -----------------------------------------------------------------------------------------------------------

CALL_FAILURES = frozenset({"busy", "no-answer", "failed", "canceled"})
"""Twilio call statuses that delivery passes on as the error code of a failed attempt."""
CALL_PROGRESS: dict[str, str] = {
    DeliveryStatus.SENDING.value: "queued or ringing",
    DeliveryStatus.SENT.value: "in progress",
    DeliveryStatus.DELIVERED.value: "completed",
}
ANSWERED_BY_PREFIX = "answered by "
MAX_ANSWERED_BY = 40


def call_status(channel: str, status: str, error_code: str | None) -> str | None:
    """A call's progress in Twilio's words, from the delivery status it maps onto; None for SMS and email."""
    if channel != Channel.VOICE:
        return None
    if error_code in CALL_FAILURES:
        return error_code
    return CALL_PROGRESS.get(status)


def answered_by(attempt: DeliveryAttempt) -> str | None:
    """Who picked up a call (Twilio's ``AnsweredBy``: human, machine_start, fax, unknown ...), as delivery noted it."""
    if attempt.channel != Channel.VOICE or not attempt.detail or not attempt.detail.startswith(ANSWERED_BY_PREFIX):
        return None
    return display_safe(attempt.detail.removeprefix(ANSWERED_BY_PREFIX).strip()[:MAX_ANSWERED_BY])


class Acknowledgement(BaseModel):
    at: datetime
    how: str | None = Field(description="'PIN on call attempt N' when it came while a call was under way.")


def acknowledgement(notice: DeliveryNotice) -> Acknowledgement | None:
    """When the victim confirmed the notice (its repeats stopped) and, for a call, whether it was by the PIN.

    Delivery records only when; a PIN is keyed in while a call is under way, so an acknowledgement between a
    call's hand-off and its end was the PIN on that call (a reply or a link would come at another time).
    """
    at = notice.acknowledged_at
    if at is None:
        return None
    for attempt in notice.attempts:
        if attempt.channel != Channel.VOICE or attempt.handed_off_at is None or at < attempt.handed_off_at:
            continue
        if attempt.completed_at is None or at <= attempt.completed_at:
            return Acknowledgement(at=at, how=f"PIN on call attempt {attempt.number}")
    return Acknowledgement(at=at, how=None)
