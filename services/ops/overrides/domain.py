"""Operator overrides, without I/O: what an admin typed, read as times in the agency's zone, and ingest's request
and answer."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from services.ops.audit.domain import MAX_REASON
from shared.vocabulary import CustodyStatus, IdentifierKind, ReleaseReason


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
