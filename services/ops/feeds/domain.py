"""Feed health, without I/O: ingest's answer, staleness, and one alert per outage."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, model_validator


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


class FeedState(BaseModel):
    """A feed as ops last judged it (a row of ``feeds``)."""

    agency_id: str
    name: str
    last_feed_at: datetime | None
    records_accepted: int
    records_rejected: int
    in_custody: int
    expected_feed_interval_minutes: int
    notices_paused: bool | None
    stale: bool
    stale_since: datetime | None
    checked_at: datetime


class FeedOutage(BaseModel):
    """What ops remembers of a feed between two checks: whether it was stale, and since when."""

    stale: bool
    stale_since: datetime | None


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


def stale_since(feed: FeedHealth, previous: FeedOutage | None, *, stale: bool, now: datetime) -> datetime | None:
    """When the outage began: kept from the last check (also on the check that sees it end), else when the next
    feed was due (or now, if it was never fed)."""
    kept = previous.stale_since if previous is not None and previous.stale else None
    if stale and kept is None:
        if feed.last_feed_at is None:
            return now
        return feed.last_feed_at + timedelta(minutes=feed.expected_feed_interval_minutes)
    return kept


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
