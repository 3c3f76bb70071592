"""Scheduled notices: a release or court date announced, then reminded before it. Pure: no I/O, no clock.

Matching holds the reminders (stored in its database, sent by :mod:`services.matching.reminders.flows`) because it is
the one service that knows both sides: each subject's newest custody change, with the case information that
carries the dates, and each case's verified subscribers with their time zones and quiet hours. Ingest knows no
subscribers; delivery knows a notice only once it is requested, and a reminder due in 14 days is no notice yet.

Reminder times are computed in the subscriber's own time zone: "one day before" keeps the wall-clock time across
a daylight-saving change, and "the morning of" is the agency's morning hour on the day of the release. A reminder
that falls in the subscriber's quiet hours moves to the end of them, or, when that would be too late, to just
before they begin; delivery would otherwise hold it until morning, after the release.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import partial
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict

from services.matching.domain import (
    NOTIFICATION_NAMESPACE,
    KnownCustodyState,
    custody_facts,
    notices_to,
    reachable_contacts,
)
from shared.events import CaseInformation, NotificationKind, NotificationRequested, ReminderPolicy, SubscriptionState
from shared.quiet_hours import in_quiet_hours
from shared.vocabulary import Channel, CustodyStatus, Urgency

REMINDER_NAMESPACE = uuid.UUID("0b7e4c1a-6f0d-4d7b-a3c2-8e5f1d9a2b64")
"""Fixed forever: reminder ids (and so their notices' ids) must not change between releases."""

BEFORE_QUIET_HOURS = timedelta(minutes=15)
"""How long before the subscriber's quiet hours a reminder goes that could not wait for them to end (at most half
of the hours that are not quiet)."""


@dataclass(frozen=True)
class ScheduledDates:
    """The dates of a case that subscribers are told of and reminded of."""

    release_at: datetime | None
    court_at: datetime | None
    court_name: str | None

    @classmethod
    def of(cls, case: CaseInformation | None) -> ScheduledDates:
        if case is None:
            return cls(None, None, None)
        return cls(case.scheduled_release_at, case.next_court_at, case.court_name)


def _real(moment: datetime) -> datetime:
    """A wall-clock time that exists: one in a daylight-saving gap becomes the instant it names."""
    zone = moment.tzinfo
    return moment.astimezone(UTC).astimezone(zone)


def _quiet(moment: datetime, start: time, end: time) -> bool:
    return in_quiet_hours(_real(moment).time().replace(tzinfo=None), start, end)


def out_of_quiet_hours(moment: datetime, before: datetime, start: time, end: time) -> datetime | None:
    """``moment`` (aware, in the subscriber's zone) moved out of quiet hours, still earlier than ``before``; None
    when the hours that are not quiet are too short to hold it."""
    if not _quiet(moment, start, end):
        return moment
    zone = moment.tzinfo
    ends = datetime.combine(moment.date(), end, tzinfo=zone)
    if ends <= moment:
        ends += timedelta(days=1)
    if ends < before and not _quiet(ends, start, end):
        return _real(ends)
    began = datetime.combine(moment.date(), start, tzinfo=zone)
    if began > moment:
        began -= timedelta(days=1)
    awake = (datetime.combine(moment.date(), start) - datetime.combine(moment.date(), end)) % timedelta(days=1)
    earlier = began - min(BEFORE_QUIET_HOURS, awake / 2)
    return None if _quiet(earlier, start, end) else _real(earlier)


def _days_before(event_local: datetime, days: int) -> datetime:
    """The same wall-clock time ``days`` days earlier (re-resolved, so a DST change keeps the local time)."""
    earlier = event_local.replace(tzinfo=None) - timedelta(days=days)
    return earlier.replace(tzinfo=event_local.tzinfo)


def reminder_times(
    event_at: datetime,
    *,
    days_before: list[int],
    morning_hour: int | None,
    zone: ZoneInfo,
    quiet_start: time,
    quiet_end: time,
    now: datetime,
) -> list[datetime]:
    """When to remind of an event at ``event_at``: each of ``days_before``, and on its morning (``morning_hour``,
    when given and still before the event), out of quiet hours; only times after ``now`` and before the event."""
    event_local = event_at.astimezone(zone)
    wanted = [_real(_days_before(event_local, days)) for days in days_before]
    if morning_hour is not None:
        morning = datetime.combine(event_local.date(), time(morning_hour), tzinfo=zone)
        if morning < event_local:
            wanted.append(_real(morning))
    moved = {out_of_quiet_hours(moment, event_local, quiet_start, quiet_end) for moment in wanted}
    return sorted(moment.astimezone(event_at.tzinfo) for moment in moved if moment and now < moment < event_local)


def release_reminder_times(
    release_at: datetime, policy: ReminderPolicy, *, zone: ZoneInfo, quiet_start: time, quiet_end: time, now: datetime
) -> list[datetime]:
    return reminder_times(
        release_at,
        days_before=policy.release_days_before,
        morning_hour=policy.morning_hour if policy.release_morning_of else None,
        zone=zone,
        quiet_start=quiet_start,
        quiet_end=quiet_end,
        now=now,
    )


def court_reminder_times(
    court_at: datetime, policy: ReminderPolicy, *, zone: ZoneInfo, quiet_start: time, quiet_end: time, now: datetime
) -> list[datetime]:
    return reminder_times(
        court_at,
        days_before=policy.court_days_before,
        morning_hour=None,
        zone=zone,
        quiet_start=quiet_start,
        quiet_end=quiet_end,
        now=now,
    )


class Reminder(BaseModel):
    """One reminder to one subscription (a row of ``scheduled_notices``); its id (and so its notices' ids) is the
    same however often it is planned, so a re-planned or re-sent reminder can never become a second notice."""

    model_config = ConfigDict(frozen=True)

    reminder_id: str
    subscription_id: str
    agency_id: str
    subject_id: str
    kind: NotificationKind
    scheduled_for: datetime
    due_at: datetime


def reminder_id(
    subscription_id: str, subject_id: str, kind: NotificationKind, scheduled_for: datetime, due_at: datetime
) -> str:
    moments = f"{scheduled_for.astimezone(UTC).isoformat()}|{due_at.astimezone(UTC).isoformat()}"
    return str(uuid.uuid5(REMINDER_NAMESPACE, f"{subscription_id}|{subject_id}|{kind}|{moments}"))


NO_LONGER_HELD = frozenset(
    {
        CustodyStatus.RELEASED,
        CustodyStatus.ESCAPED,
        CustodyStatus.TRANSFERRED,
        CustodyStatus.REMOVED,
        CustodyStatus.DECEASED,
    }
)
GONE = frozenset({CustodyStatus.REMOVED, CustodyStatus.DECEASED})


def ended_reminders(status: CustodyStatus) -> list[NotificationKind]:
    """A release (or escape, transfer...) that happens first ends the release reminders; a court date still
    stands after a release on bond, but not after a removal or a death."""
    ended: list[NotificationKind] = []
    if status in NO_LONGER_HELD:
        ended.append(NotificationKind.RELEASE_REMINDER)
    if status in GONE:
        ended.append(NotificationKind.COURT_REMINDER)
    return ended


def dates_after(status: CustodyStatus, case: CaseInformation | None) -> ScheduledDates:
    """The dates still ahead of a subject after a change to ``status``."""
    dates = ScheduledDates.of(case)
    ended = ended_reminders(status)
    return ScheduledDates(
        release_at=None if NotificationKind.RELEASE_REMINDER in ended else dates.release_at,
        court_at=None if NotificationKind.COURT_REMINDER in ended else dates.court_at,
        court_name=dates.court_name,
    )


def reminded_date(kind: NotificationKind, dates: ScheduledDates) -> datetime | None:
    return dates.court_at if kind is NotificationKind.COURT_REMINDER else dates.release_at


def reminders_for(
    subscription_id: str,
    agency_id: str,
    subject_id: str,
    dates: ScheduledDates,
    policy: ReminderPolicy,
    *,
    zone: ZoneInfo,
    quiet_start: time,
    quiet_end: time,
    now: datetime,
) -> list[Reminder]:
    """Every reminder one subscription should get for a case's dates, as of ``now``."""
    planned: list[Reminder] = []
    for kind, when, times in (
        (NotificationKind.RELEASE_REMINDER, dates.release_at, release_reminder_times),
        (NotificationKind.COURT_REMINDER, dates.court_at, court_reminder_times),
    ):
        if when is None:
            continue
        for due_at in times(when, policy, zone=zone, quiet_start=quiet_start, quiet_end=quiet_end, now=now):
            planned.append(
                Reminder(
                    reminder_id=reminder_id(subscription_id, subject_id, kind, when, due_at),
                    subscription_id=subscription_id,
                    agency_id=agency_id,
                    subject_id=subject_id,
                    kind=kind,
                    scheduled_for=when,
                    due_at=due_at,
                )
            )
    return planned


def announcements(before: ScheduledDates, after: ScheduledDates, now: datetime) -> list[NotificationKind]:
    """What a new custody change announces: a scheduled release or court date that is new or changed and ahead."""
    kinds: list[NotificationKind] = []
    if after.release_at is not None and after.release_at != before.release_at and after.release_at > now:
        kinds.append(NotificationKind.RELEASE_SCHEDULED)
    if after.court_at is not None and after.court_at != before.court_at and after.court_at > now:
        kinds.append(NotificationKind.COURT_DATE_SCHEDULED)
    return kinds


def still_due(reminder: Reminder, state: KnownCustodyState | None) -> bool:
    """A reminder goes only if the subject still has that very date ahead (a release first, a changed date or a
    seal would have cancelled it; this also covers one decided just before such a change committed)."""
    if state is None:
        return False
    return reminded_date(reminder.kind, dates_after(state.change.status, state.change.case)) == reminder.scheduled_for


# The notices: a date announced, or reminded of

ANNOUNCED_TO: dict[NotificationKind, CustodyStatus] = {
    NotificationKind.RELEASE_SCHEDULED: CustodyStatus.RELEASED,
    NotificationKind.RELEASE_REMINDER: CustodyStatus.RELEASED,
    NotificationKind.COURT_DATE_SCHEDULED: CustodyStatus.COURT_DATE_SET,
    NotificationKind.COURT_REMINDER: CustodyStatus.COURT_DATE_SET,
}
"""Who a scheduled notice is for: those who asked to hear of releases, or of court dates."""


def scheduled_notice_id(cause: str, kind: NotificationKind, subscription_id: str, channel: Channel) -> str:
    """``cause``: the custody event that announced the date, or the reminder's own id."""
    return str(uuid.uuid5(NOTIFICATION_NAMESPACE, f"scheduled|{kind}|{cause}|{subscription_id}|{channel}"))


def wants(subscription: SubscriptionState, kind: NotificationKind) -> bool:
    return ANNOUNCED_TO[kind] in subscription.event_types


def scheduled_notices(
    kind: NotificationKind,
    cause: str,
    state: KnownCustodyState,
    subscription: SubscriptionState,
    requested_at: datetime,
) -> list[NotificationRequested]:
    """A scheduled release or court date announced, or reminded of, to each reachable contact: informational
    (a date ahead is no emergency), with the date and court from the case the agency shares."""
    case = state.change.case
    if case is None or not wants(subscription, kind):
        return []
    court = kind in (NotificationKind.COURT_DATE_SCHEDULED, NotificationKind.COURT_REMINDER)
    when = case.next_court_at if court else case.scheduled_release_at
    notices = notices_to(
        subscription,
        reachable_contacts(subscription),
        kind=kind,
        facts=custody_facts(state.custody_event_id, state.change, subscription.identifier),
        notification_id=partial(scheduled_notice_id, cause, kind, subscription.subscription_id),
        requested_at=requested_at,
    )
    extra = {"urgency": Urgency.INFORMATIONAL, "scheduled_for": when, "court_name": case.court_name if court else None}
    return [notice.model_copy(update=extra) for notice in notices]
