"""What the dashboard decides, without I/O: roles, feed staleness, lag, counts, safe display, storm holds, overrides."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.events import DeliveryStatus
from shared.logging import redact
from shared.vocabulary import CustodyStatus, IdentifierKind, ReleaseReason


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


# --- Answers of the ingest and delivery admin APIs -----------------------------------------------------------------


ModelT = TypeVar("ModelT", bound=BaseModel)


class MatchingCounts(BaseModel):
    """Matching's sizes for one agency (or all): shown to logged-in operators only, never to an agency."""

    active_subscriptions: int
    reachable_contacts: int
    subjects_with_status: int
    sealed_subjects: int
    notification_requests: int


class AnswerFormatError(ValueError):
    """Another service answered with something that is not the document its contract promises."""


def parse_items(model: type[ModelT], document: Any, what: str) -> list[ModelT]:
    """A JSON list of ``model``; says which item is wrong and why otherwise."""
    if not isinstance(document, list):
        raise AnswerFormatError(f"expected a list of {what}")
    return [parse_one(model, item, f"{what} #{index}") for index, item in enumerate(document)]


def parse_one(model: type[ModelT], document: Any, what: str) -> ModelT:
    try:
        return model.model_validate(document)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or what}: {e['msg']}" for e in error.errors())
        raise AnswerFormatError(f"{what}: {problems}") from None


FIELD_LABELS = {
    "person_number": "person number",
    "booking_number": "booking number",
    "case_numbers": "case number",
    "effective_at": "effective time",
    "effective_local": "effective time",
    "court_date": "court date",
    "court_date_local": "court date",
    "utc_offset": "UTC offset",
    "release_reason": "release reason",
    "transfer_destination": "transfer destination",
    "hold_id": "storm hold",
    "agency_id": "agency",
}


def explain_refusal(status_code: int, document: Any) -> str:
    """Another service's error answer in plain words for an operator (FastAPI's ``detail``, string or list)."""
    detail = document.get("detail") if isinstance(document, dict) else None
    if isinstance(detail, str) and detail.strip():
        return detail.strip()
    if isinstance(detail, list) and detail:
        problems = []
        for issue in detail:
            if not isinstance(issue, dict):
                problems.append(str(issue))
                continue
            location = [str(part) for part in issue.get("loc", []) if part not in {"body", "query", "path"}]
            field = FIELD_LABELS.get(location[0], location[0].replace("_", " ")) if location else ""
            message = str(issue.get("msg", "invalid")).removeprefix("Value error, ")
            problems.append(f"{field}: {message}" if field else message)
        return "; ".join(problems)
    return f"answered HTTP {status_code}"


# --- Storm holds ---------------------------------------------------------------------------------------------------


class HoldState(StrEnum):
    HOLDING = "holding"
    RELEASED = "released"
    DISCARDED = "discarded"


class HeldSample(BaseModel):
    """One held change, as the agency's feed reported it (the subject's name is shown to operators only)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    agency_record_id: str
    status: str
    previous_status: str | None = None
    effective_at: datetime
    facility: str | None = None
    display_name: str | None = None


class StormHold(BaseModel):
    """A burst of urgent changes from one agency that ingest holds until an admin releases or discards it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    hold_id: str = Field(min_length=1)
    agency_id: str
    state: HoldState
    opened_at: datetime
    trigger: str
    held_changes: int = Field(ge=0)
    urgent_changes: int = Field(ge=0)
    by_status: dict[str, int] = Field(default_factory=dict)
    samples: list[HeldSample] = Field(default_factory=list)
    decided_at: datetime | None = None
    decided_by: str | None = None
    decision_reason: str | None = None


def split_holds(
    holding: Iterable[StormHold], recent: Iterable[StormHold], decided_shown: int
) -> tuple[list[StormHold], list[StormHold]]:
    """Open holds (oldest first: it has waited longest) and the newest decided ones (newest decision first).

    ``recent`` (every state) was fetched after ``holding``, so where both list a hold, its state there is the newer.
    """
    latest = {hold.hold_id: hold for hold in holding}
    latest.update({hold.hold_id: hold for hold in recent})
    open_holds = [hold for hold in latest.values() if hold.state is HoldState.HOLDING]
    decided = [hold for hold in latest.values() if hold.state is not HoldState.HOLDING]
    open_holds.sort(key=lambda hold: hold.opened_at)
    decided.sort(key=lambda hold: hold.decided_at or hold.opened_at, reverse=True)
    return open_holds, decided[:decided_shown]


class DecisionRefusedError(ValueError):
    """A storm decision or a block that is refused before asking any other service, and why."""


def decision_reason(text: str | None, *, what: str) -> str:
    """The required reason of a discard or a block: 1..500 characters after trimming."""
    reason = (text or "").strip()
    if not reason:
        raise DecisionRefusedError(f"give a reason for {what}")
    if len(reason) > MAX_REASON:
        raise DecisionRefusedError(f"the reason is {len(reason)} characters; at most {MAX_REASON}")
    return reason


MAX_REASON = 500


def hold_released_message(hold: StormHold) -> str:
    return (
        f"Released storm hold {hold.hold_id} of {hold.agency_id}: its {hold.held_changes} held changes are"
        " published in feed order and notices go out."
    )


def hold_discarded_message(hold: StormHold) -> str:
    return (
        f"Discarded storm hold {hold.hold_id} of {hold.agency_id}: none of its {hold.held_changes} held changes"
        " is published and the subjects are rolled back; the agency's corrected feed flows as normal."
    )


# --- Operator overrides --------------------------------------------------------------------------------------------


class AgencyChoice(BaseModel):
    """An agency as ingest's admin API lists it; enough to pick it and read times in its zone."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    agency_id: str
    name: str
    timezone: str
    active: bool = True


class Override(BaseModel):
    """An operator's by-hand custody status, as ingest recorded it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    override_id: str
    agency_id: str
    subject_id: str
    result: Literal["accepted", "duplicate", "stale", "sealed"]
    event_id: str | None = None
    status: str
    effective_at: datetime
    operator: str
    reason: str
    created_at: datetime


class OverrideInput(BaseModel):
    """What an admin typed into the override form (before it becomes ingest's request)."""

    model_config = ConfigDict(frozen=True, str_strip_whitespace=True)

    agency_id: str = Field(min_length=1, max_length=100)
    identifier_kind: IdentifierKind
    identifier: str = Field(default="", max_length=64)
    status: CustodyStatus
    effective_local: str = Field(default="", max_length=40)
    utc_offset: str = Field(default="", max_length=10)
    court_date_local: str = Field(default="", max_length=40)
    release_reason: ReleaseReason | None = None
    transfer_destination: str = Field(default="", max_length=200)
    facility: str = Field(default="", max_length=200)
    name: str = Field(default="", max_length=200)
    reason: str = Field(default="", max_length=MAX_REASON)


class OverrideRefusedError(ValueError):
    """The override form is incomplete or inconsistent; the message says what to fix, in plain words."""


OFFSET = re.compile(r"^(?P<sign>[+-])(?P<hours>\d{1,2}):?(?P<minutes>\d{2})?$")
FUTURE_TOLERANCE = timedelta(minutes=5)


def parse_utc_offset(text: str) -> timezone:
    """``+05:30``, ``-0600``, ``-6``, ``Z`` or ``UTC`` as a fixed offset (at most 14 hours, as real zones are)."""
    value = text.strip().upper()
    if value in {"Z", "UTC", "+00:00", "-00:00"}:
        return UTC
    match = OFFSET.match(value)
    if match is None:
        raise OverrideRefusedError(f"UTC offset {text!r} is not like +05:30 or -06:00")
    hours, minutes = int(match["hours"]), int(match["minutes"] or 0)
    if minutes >= 60 or hours * 60 + minutes > 14 * 60:
        raise OverrideRefusedError(f"UTC offset {text!r} is out of range (at most ±14:00)")
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(-delta if match["sign"] == "-" else delta)


def local_moment(local_text: str, *, zone_name: str, offset_text: str, what: str) -> datetime:
    """A typed date and time: with its own offset, with the explicit offset, or else in the agency's time zone.

    A wall-clock time the agency's zone skips (spring forward) or shows twice (fall back) is refused: the operator
    must then give the offset, so a notice never states a time an hour wrong.
    """
    if not local_text.strip():
        raise OverrideRefusedError(f"give the {what}")
    try:
        typed = datetime.fromisoformat(local_text.strip())
    except ValueError:
        raise OverrideRefusedError(f"{what} {local_text!r} is not a date and time like 2026-11-27T14:30") from None
    if typed.tzinfo is not None:
        return typed
    if offset_text.strip():
        return typed.replace(tzinfo=parse_utc_offset(offset_text))
    zone = ZoneInfo(zone_name)
    first, second = typed.replace(tzinfo=zone, fold=0), typed.replace(tzinfo=zone, fold=1)
    if first.utcoffset() != second.utcoffset():
        raise OverrideRefusedError(
            f"{typed:%Y-%m-%d %H:%M} happens twice or never in {zone_name} (a clock change):"
            " give the UTC offset explicitly"
        )
    return first


def effective_time(local_text: str, *, zone_name: str, offset_text: str, now: datetime) -> datetime:
    """When the status changed (see :func:`local_moment`); never in the future, a few minutes of clock skew aside."""
    moment = local_moment(local_text, zone_name=zone_name, offset_text=offset_text, what="effective time")
    if moment - now > FUTURE_TOLERANCE:
        raise OverrideRefusedError(f"the effective time {moment.isoformat()} is in the future")
    return moment


def override_request(entered: OverrideInput, *, operator: str, zone_name: str, now: datetime) -> dict[str, Any]:
    """The body of ingest's ``POST /v1/admin/agencies/{id}/overrides``, exactly per its contract.

    ``court_date`` (ingest's one field beyond the contract) is sent only with the status ``court_date_set``.
    """
    if not entered.identifier:
        raise OverrideRefusedError("give the booking, person or case number of the person in custody")
    if not entered.reason:
        raise OverrideRefusedError("give the reason for the override (why the feed cannot say it)")
    if entered.release_reason is not None and entered.status is not CustodyStatus.RELEASED:
        raise OverrideRefusedError("a release reason goes only with the status 'released'")
    court_date_set = entered.status is CustodyStatus.COURT_DATE_SET
    if entered.court_date_local and not court_date_set:
        raise OverrideRefusedError("a court date goes only with the status 'court_date_set'")
    kind = entered.identifier_kind
    body: dict[str, Any] = {
        "person_number": entered.identifier if kind is IdentifierKind.PERSON_NUMBER else None,
        "booking_number": entered.identifier if kind is IdentifierKind.BOOKING_NUMBER else None,
        "case_numbers": [entered.identifier] if kind is IdentifierKind.CASE_NUMBER else [],
        "status": entered.status.value,
        "effective_at": effective_time(
            entered.effective_local, zone_name=zone_name, offset_text=entered.utc_offset, now=now
        ).isoformat(),
        "release_reason": entered.release_reason.value if entered.release_reason else None,
        "transfer_destination": entered.transfer_destination or None,
        "facility": entered.facility or None,
        "name": entered.name or None,
        "operator": operator,
        "reason": entered.reason,
    }
    if court_date_set:
        court_date = local_moment(
            entered.court_date_local, zone_name=zone_name, offset_text=entered.utc_offset, what="court date"
        )
        body["court_date"] = court_date.isoformat()
    return body


OVERRIDE_OUTCOMES: dict[str, str] = {
    "accepted": "accepted: notices go out to the subject's subscribers",
    "duplicate": "duplicate: the subject already has this status; no notice",
    "stale": "stale: older than the subject's newest record; no notice",
    "sealed": "sealed: the subject's record is sealed; no notice",
}


def override_message(override: Override) -> str:
    return (
        f"Override {override.override_id} ({override.status} at {override.effective_at.isoformat()}):"
        f" {OVERRIDE_OUTCOMES[override.result]}."
    )


# --- Blocking a notice ---------------------------------------------------------------------------------------------


class PendingNotice(BaseModel):
    """A notice delivery holds unsent (quiet hours, a paused agency, a retry), as ops shows it: never its contact."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    notification_id: str
    subscription_id: str
    agency_id: str
    channel: str
    kind: str | None = None
    urgency: str | None = None
    status: str
    attempt_count: int = 0
    case: dict[str, str] | None = None
    custody_event_id: str | None = None
    created_at: datetime
    updated_at: datetime

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
