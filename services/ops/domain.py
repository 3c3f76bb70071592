"""What the dashboard decides, without I/O: roles, feed staleness, lag, windowed counts, safe display of contacts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.events import DeliveryStatus
from shared.logging import redact


class Role(StrEnum):
    VIEWER = "viewer"
    ADMIN = "admin"


def may_act(role: Role) -> bool:
    """Only admins replay dead letters and pause agencies; viewers only look."""
    return role is Role.ADMIN


FAILURE_STATUSES = frozenset(
    {DeliveryStatus.TEMPORARY_FAILURE, DeliveryStatus.PERMANENT_FAILURE, DeliveryStatus.TECHNICAL_FAILURE}
)
LATENCY_STAGES: dict[DeliveryStatus, str] = {
    DeliveryStatus.SENT: "feed_to_handoff",
    DeliveryStatus.DELIVERED: "feed_to_delivered",
}


def latency_seconds(status: DeliveryStatus, at: datetime, feed_received_at: datetime | None) -> float | None:
    """Feed-to-hand-off (``sent``) or feed-to-delivered latency of one status change; None for other statuses."""
    if status not in LATENCY_STAGES or feed_received_at is None:
        return None
    return max(0.0, (at - feed_received_at).total_seconds())


def display_safe(text: str | None) -> str | None:
    """Contacts reach ops only masked; should a full phone number or email ever arrive, it is never shown."""
    return None if text is None else redact(text)


# --- Feeds ---------------------------------------------------------------------------------------------------------


class FeedHealthFormatError(ValueError):
    """The ingest service answered with something that is not its feed-health document."""


class FeedHealth(BaseModel):
    """One agency's feed as the ingest service reports it; records counted over the last 24 hours."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _flatten_counts(cls, value: Any) -> Any:
        """Ingest reports ``records_last_24h: {"accepted": n, "rejected": m, ...}``; keep the two we show."""
        if isinstance(value, dict) and isinstance(value.get("records_last_24h"), dict):
            counts = value["records_last_24h"]
            value = value | {
                "records_accepted": counts.get("accepted", 0),
                "records_rejected": counts.get("rejected", 0),
            }
        return value

    agency_id: str = Field(min_length=1)
    name: str | None = None
    last_feed_at: datetime | None = Field(
        default=None, validation_alias=AliasChoices("last_feed_at", "last_feed_received_at", "last_received_at")
    )
    records_accepted: int = Field(
        default=0, ge=0, validation_alias=AliasChoices("records_accepted", "rows_accepted", "accepted")
    )
    records_rejected: int = Field(
        default=0, ge=0, validation_alias=AliasChoices("records_rejected", "rows_rejected", "rejected")
    )
    in_custody: int = Field(default=0, ge=0, validation_alias=AliasChoices("in_custody", "in_custody_count"))
    expected_feed_interval_minutes: int = Field(
        default=60,
        ge=1,
        validation_alias=AliasChoices("expected_feed_interval_minutes", "expected_interval_minutes"),
    )
    stale: bool = Field(default=False, validation_alias=AliasChoices("stale", "feed_stale"))
    notices_paused: bool | None = None


def with_paused(feeds: list[FeedHealth], paused: Mapping[str, bool]) -> list[FeedHealth]:
    """Add each agency's pause flag (from ingest's agency list) where the feed-health answer lacks it."""
    return [
        feed.model_copy(update={"notices_paused": paused[feed.agency_id]})
        if feed.notices_paused is None and feed.agency_id in paused
        else feed
        for feed in feeds
    ]


def parse_feed_health(document: Any) -> list[FeedHealth]:
    """Accept ``[...]`` or ``{"agencies": [...]}``; say precisely what is wrong otherwise."""
    items = document.get("agencies") if isinstance(document, dict) else document
    if not isinstance(items, list):
        raise FeedHealthFormatError("expected a list of agencies or an object with an 'agencies' list")
    feeds: list[FeedHealth] = []
    for index, item in enumerate(items):
        try:
            feeds.append(FeedHealth.model_validate(item))
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
            raise FeedHealthFormatError(f"agency #{index}: {problems}") from None
    return feeds


def is_stale(feed: FeedHealth, now: datetime) -> bool:
    """Quiet longer than its expected interval, or flagged stale by ingest (which also judges never-fed agencies)."""
    if feed.stale or feed.last_feed_at is None:
        return feed.stale
    return now - feed.last_feed_at > timedelta(minutes=feed.expected_feed_interval_minutes)


FeedAlertKind = Literal["feed_stale", "feed_recovered"]


def feed_transition(was_stale: bool | None, now_stale: bool) -> FeedAlertKind | None:
    """The alert to raise, once per outage: on the change to stale and on the change back (None: first sight, well)."""
    if now_stale and not was_stale:
        return "feed_stale"
    if was_stale and not now_stale:
        return "feed_recovered"
    return None


def feed_alert_message(feed: FeedHealth, kind: FeedAlertKind, now: datetime) -> str:
    name = feed.name or feed.agency_id
    if kind == "feed_recovered":
        return f"Feed of {name} is flowing again (last feed {feed.last_feed_at:%Y-%m-%d %H:%M} UTC)."
    if feed.last_feed_at is None:
        return f"Feed of {name} has never been received (expected every {feed.expected_feed_interval_minutes} min)."
    quiet = int((now - feed.last_feed_at).total_seconds() // 60)
    return f"Feed of {name} quiet for {quiet} min (expected every {feed.expected_feed_interval_minutes} min)."


def feed_alert_event_id(agency_id: str, kind: FeedAlertKind, outage_started: datetime) -> str:
    """Deterministic, so a crash and a second try raise the same alert, not two."""
    return f"ops:{kind}:{agency_id}:{outage_started.isoformat()}"


# --- Pipeline ------------------------------------------------------------------------------------------------------

TopicPartitionKey = tuple[str, int]


def consumer_lag(
    committed: Mapping[TopicPartitionKey, int], end_offsets: Mapping[TopicPartitionKey, int]
) -> dict[str, int]:
    """Messages not yet processed per topic: end offset minus committed offset, summed over partitions."""
    lag: dict[str, int] = {}
    for (topic, partition), offset in committed.items():
        end = end_offsets.get((topic, partition))
        if end is None:
            continue
        lag[topic] = lag.get(topic, 0) + max(0, end - offset)
    return lag


def strip_prefix(topic: str, prefix: str) -> str | None:
    """The base name of one of our topics; None for a topic of another deployment sharing the broker."""
    return topic[len(prefix) :] if topic.startswith(prefix) else None


class ReplayRefusedError(ValueError):
    """A dead letter that cannot be replayed, and why."""


def replay_target(original_topic: str | None, prefix: str, known_topics: Iterable[str]) -> str:
    """The topic to re-publish a dead letter to: only one of this deployment's event topics, never another DLQ."""
    if not original_topic:
        raise ReplayRefusedError("the dead letter has no cw-original-topic header")
    base = strip_prefix(original_topic, prefix)
    if base is None or base not in set(known_topics):
        raise ReplayRefusedError(f"original topic {original_topic!r} is not one of this deployment's event topics")
    return original_topic


# --- Delivery counts -----------------------------------------------------------------------------------------------


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


class ChartBar(BaseModel):
    """One column of the hourly chart, already in SVG coordinates."""

    x: float
    width: float
    delivered_y: float
    delivered_height: float
    failed_y: float
    failed_height: float
    label: str
    title: str


def chart_columns(bars: Sequence[Bar], *, width: float = 720, height: float = 120) -> list[ChartBar]:
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
            ChartBar(
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
