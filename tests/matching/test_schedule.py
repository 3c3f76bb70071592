"""The reminder schedule: given a date, an agency's policy, a time zone and quiet hours, the reminder times."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from services.matching.reminders.domain import (
    ScheduledDates,
    announcements,
    dates_after,
    ended_reminders,
    release_reminder_times,
    reminder_id,
    reminders_for,
)
from shared.events import CaseInformation, NotificationKind, ReminderPolicy
from shared.vocabulary import CustodyStatus

CHICAGO = ZoneInfo("America/Chicago")
QUIET = {"quiet_start": time(21, 0), "quiet_end": time(7, 0)}
NO_QUIET = {"quiet_start": time(0, 0), "quiet_end": time(0, 0)}


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=CHICAGO)  # type: ignore[misc,arg-type]


def test_fourteen_days_one_day_and_the_morning_of_a_release() -> None:
    release = local(2026, 6, 20, 15, 0)
    times = release_reminder_times(release, ReminderPolicy(), zone=CHICAGO, now=local(2026, 6, 1, 12, 0), **QUIET)
    assert times == [local(2026, 6, 6, 15, 0), local(2026, 6, 19, 15, 0), local(2026, 6, 20, 8, 0)]


def test_a_reminder_in_quiet_hours_moves_to_their_end_or_before_them_when_that_is_too_late() -> None:
    release = local(2026, 6, 20, 6, 0)  # 06:00: the day-before reminder would be 06:00, in quiet hours
    times = release_reminder_times(release, ReminderPolicy(), zone=CHICAGO, now=local(2026, 6, 1, 12, 0), **QUIET)
    # 14 and 1 days before move to 07:00; the morning of (08:00) is after the release, so none
    assert times == [local(2026, 6, 6, 7, 0), local(2026, 6, 19, 7, 0)]
    at_midnight = local(2026, 6, 20, 0, 30)
    times = release_reminder_times(
        at_midnight, ReminderPolicy(release_days_before=[]), zone=CHICAGO, now=local(2026, 6, 19, 12, 0), **QUIET
    )
    assert times == []  # the morning of comes after a 00:30 release
    policy = ReminderPolicy(release_days_before=[1], release_morning_of=False)
    late = local(2026, 6, 20, 5, 0)  # 1 day before = 05:00 on the 19th, quiet until 07:00 the 19th: still in time
    assert release_reminder_times(late, policy, zone=CHICAGO, now=local(2026, 6, 1), **QUIET) == [
        local(2026, 6, 19, 7, 0)
    ]
    soon = local(2026, 6, 20, 6, 30)
    hours_before = ReminderPolicy(release_days_before=[0], release_morning_of=False)  # the event's own 06:30
    # at the event itself is too late, and the end of quiet hours (07:00) too: the evening before, ahead of them
    assert release_reminder_times(soon, hours_before, zone=CHICAGO, now=local(2026, 6, 1), **QUIET) == [
        local(2026, 6, 19, 20, 45)
    ]
    # 23:00 the day before is quiet; their end (07:00 on the day) is still ahead of the 23:00 release
    assert release_reminder_times(
        local(2026, 6, 20, 23, 0),
        ReminderPolicy(release_days_before=[1], release_morning_of=False),
        zone=CHICAGO,
        now=local(2026, 6, 1),
        **QUIET,
    ) == [local(2026, 6, 20, 7, 0)]


def test_the_local_time_is_kept_across_a_daylight_saving_change() -> None:
    release = local(2026, 11, 10, 9, 0)  # CST; 14 days before is in CDT
    (first, *_) = release_reminder_times(release, ReminderPolicy(), zone=CHICAGO, now=local(2026, 10, 1), **NO_QUIET)
    assert first.astimezone(CHICAGO).hour == 9
    assert first == local(2026, 10, 27, 9, 0)


def test_past_times_are_left_out_and_a_policy_is_per_agency() -> None:
    release = local(2026, 6, 20, 15, 0)
    assert release_reminder_times(release, ReminderPolicy(), zone=CHICAGO, now=local(2026, 6, 19, 16, 0), **QUIET) == [
        local(2026, 6, 20, 8, 0)
    ]
    policy = ReminderPolicy(release_days_before=[7], release_morning_of=False)
    assert release_reminder_times(release, policy, zone=CHICAGO, now=local(2026, 6, 1), **QUIET) == [
        local(2026, 6, 13, 15, 0)
    ]


@given(
    offset_hours=st.integers(min_value=1, max_value=24 * 40),
    start=st.times(),
    end=st.times(),
    days=st.lists(st.integers(min_value=0, max_value=30), max_size=4),
)
def test_reminders_are_always_ahead_before_the_event_and_out_of_quiet_hours(
    offset_hours: int, start: time, end: time, days: list[int]
) -> None:
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    event = now + timedelta(hours=offset_hours)
    policy = ReminderPolicy(release_days_before=days)
    times = release_reminder_times(event, policy, zone=CHICAGO, quiet_start=start, quiet_end=end, now=now)
    assert times == sorted(set(times))
    for moment in times:
        assert now < moment < event
        clock = moment.astimezone(CHICAGO).time()
        quiet = start != end and (start <= clock < end if start < end else clock >= start or clock < end)
        assert not quiet


def test_a_release_ends_release_reminders_a_removal_also_court_ones() -> None:
    assert ended_reminders(CustodyStatus.RELEASED) == [NotificationKind.RELEASE_REMINDER]
    assert ended_reminders(CustodyStatus.REMOVED) == [
        NotificationKind.RELEASE_REMINDER,
        NotificationKind.COURT_REMINDER,
    ]
    assert ended_reminders(CustodyStatus.IN_CUSTODY) == []
    case = CaseInformation(scheduled_release_at=local(2026, 6, 20, 15), next_court_at=local(2026, 6, 10, 9))
    assert dates_after(CustodyStatus.RELEASED, case).release_at is None
    assert dates_after(CustodyStatus.RELEASED, case).court_at == local(2026, 6, 10, 9)


def test_announcements_only_for_a_new_or_changed_date_ahead() -> None:
    now = local(2026, 6, 1)
    release = ScheduledDates(local(2026, 6, 20), None, None)
    assert announcements(ScheduledDates(None, None, None), release, now) == [NotificationKind.RELEASE_SCHEDULED]
    assert announcements(release, release, now) == []
    assert announcements(release, ScheduledDates(local(2026, 6, 22), local(2026, 6, 5), "Court"), now) == [
        NotificationKind.RELEASE_SCHEDULED,
        NotificationKind.COURT_DATE_SCHEDULED,
    ]
    assert announcements(ScheduledDates(None, None, None), ScheduledDates(local(2026, 5, 1), None, None), now) == []


def test_reminder_ids_are_deterministic_and_distinct() -> None:
    dates = ScheduledDates(local(2026, 6, 20, 15), local(2026, 6, 10, 9), "Court 2")
    plan = reminders_for("sub", "county", "subj", dates, ReminderPolicy(), zone=CHICAGO, now=local(2026, 6, 1), **QUIET)
    again = reminders_for(
        "sub", "county", "subj", dates, ReminderPolicy(), zone=CHICAGO, now=local(2026, 6, 2), **QUIET
    )
    assert [r.kind for r in plan].count(NotificationKind.RELEASE_REMINDER) == 3
    assert [r.kind for r in plan].count(NotificationKind.COURT_REMINDER) == 1
    assert len({r.reminder_id for r in plan}) == len(plan)
    assert [r.reminder_id for r in plan] == [r.reminder_id for r in again]
    moment = local(2026, 6, 19, 15)
    assert reminder_id("s", "x", NotificationKind.RELEASE_REMINDER, moment, moment) == reminder_id(
        "s", "x", NotificationKind.RELEASE_REMINDER, moment.astimezone(UTC), moment.astimezone(UTC)
    )
