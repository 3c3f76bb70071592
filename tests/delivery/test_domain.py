"""Unit tests of the pure delivery rules: quiet hours, backoff, repeats, receipts."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.delivery.domain import (
    NoticeRetrySchedule,
    attempt_reference,
    due_at,
    is_progress,
    next_repeat_at,
)
from services.delivery.providers.smtp import failure_receipt as email_failure
from services.delivery.providers.twilio.sms import failure_receipt as sms_failure
from services.delivery.providers.twilio.sms import message_receipt
from shared.events import DeliveryStatus, NotificationKind
from shared.quiet_hours import in_quiet_hours
from shared.vocabulary import Urgency

NIGHT, MORNING = time(21, 0), time(7, 0)


def test_quiet_hours_cross_midnight() -> None:
    assert in_quiet_hours(time(23, 30), NIGHT, MORNING)
    assert in_quiet_hours(time(3, 0), NIGHT, MORNING)
    assert in_quiet_hours(time(21, 0), NIGHT, MORNING)
    assert not in_quiet_hours(time(7, 0), NIGHT, MORNING)
    assert not in_quiet_hours(time(12, 0), NIGHT, MORNING)


def test_quiet_hours_within_a_day_and_none() -> None:
    assert in_quiet_hours(time(13, 0), time(12, 0), time(14, 0))
    assert not in_quiet_hours(time(14, 0), time(12, 0), time(14, 0))
    assert not in_quiet_hours(time(3, 0), time(0, 0), time(0, 0))


def test_informational_notice_at_night_waits_until_morning_local_time() -> None:
    now = datetime(2026, 3, 10, 4, 30, tzinfo=UTC)  # 23:30 on 9 March in Chicago (CDT, UTC-5)
    due = due_at(
        now,
        kind=NotificationKind.STATUS_CHANGE,
        urgency=Urgency.INFORMATIONAL,
        timezone="America/Chicago",
        quiet_start=NIGHT,
        quiet_end=MORNING,
    )
    assert due == datetime(2026, 3, 10, 12, 0, tzinfo=UTC)  # 07:00 CDT


def test_informational_notice_after_midnight_waits_until_the_same_morning() -> None:
    now = datetime(2026, 1, 15, 8, 0, tzinfo=UTC)  # 03:00 EST
    due = due_at(
        now,
        kind=NotificationKind.CURRENT_STATUS,
        urgency=Urgency.INFORMATIONAL,
        timezone="America/New_York",
        quiet_start=NIGHT,
        quiet_end=MORNING,
    )
    assert due == datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kind", "urgency"),
    [
        (NotificationKind.STATUS_CHANGE, Urgency.URGENT),
        (NotificationKind.VERIFICATION, Urgency.INFORMATIONAL),
        (NotificationKind.SUBSCRIPTION_CHANGED, Urgency.INFORMATIONAL),
    ],
)
def test_urgent_and_verification_notices_never_wait(kind: NotificationKind, urgency: Urgency) -> None:
    now = datetime(2026, 1, 15, 8, 0, tzinfo=UTC)
    due = due_at(now, kind=kind, urgency=urgency, timezone="America/New_York", quiet_start=NIGHT, quiet_end=MORNING)
    assert due == now


def test_daytime_notice_goes_at_once_and_unknown_zone_falls_back_to_utc() -> None:
    now = datetime(2026, 1, 15, 15, 0, tzinfo=UTC)
    kind, urgency = NotificationKind.STATUS_CHANGE, Urgency.INFORMATIONAL
    day = due_at(now, kind=kind, urgency=urgency, timezone="America/New_York", quiet_start=NIGHT, quiet_end=MORNING)
    assert day == now
    late = datetime(2026, 1, 15, 22, 0, tzinfo=UTC)
    held = due_at(late, kind=kind, urgency=urgency, timezone="Not/AZone", quiet_start=NIGHT, quiet_end=MORNING)
    assert held == datetime(2026, 1, 16, 7, 0, tzinfo=UTC)


@given(
    now=st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)),
    zone_name=st.sampled_from(["UTC", "America/Chicago", "Europe/Madrid", "America/Los_Angeles", "Asia/Kolkata"]),
)
def test_due_time_is_never_in_the_past_never_inside_quiet_hours_and_within_a_day(now: datetime, zone_name: str) -> None:
    from zoneinfo import ZoneInfo

    due = due_at(
        now,
        kind=NotificationKind.STATUS_CHANGE,
        urgency=Urgency.INFORMATIONAL,
        timezone=zone_name,
        quiet_start=NIGHT,
        quiet_end=MORNING,
    )
    assert now <= due <= now + timedelta(hours=11)
    assert not in_quiet_hours(due.astimezone(ZoneInfo(zone_name)).time(), NIGHT, MORNING)


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    policy = NoticeRetrySchedule(base_seconds=10, max_delay_seconds=100, window_seconds=3600, max_attempts=10)
    rng = random.Random(1)
    for failures, ceiling in [(1, 10), (2, 20), (3, 40), (4, 80), (5, 100), (9, 100)]:
        delays = [policy.delay(failures, rng) for _ in range(50)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(set(delays)) > 1  # jittered, not lockstep


def test_retries_stop_after_the_window_or_the_attempt_limit() -> None:
    policy = NoticeRetrySchedule(base_seconds=60, max_delay_seconds=3600, window_seconds=2 * 3600, max_attempts=5)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert policy.next_try(start, failures=1, first_attempt_at=start) is not None
    assert policy.next_try(start, failures=5, first_attempt_at=start) is None
    late = start + timedelta(hours=2)
    assert policy.next_try(late, failures=2, first_attempt_at=start) is None


def test_repeats_run_on_an_interval_until_the_window_ends() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    until = now + timedelta(hours=1)
    assert next_repeat_at(now, repeat_until=until, interval_seconds=1800) == now + timedelta(minutes=30)
    assert next_repeat_at(now + timedelta(minutes=40), repeat_until=until, interval_seconds=1800) is None
    assert next_repeat_at(now, repeat_until=None, interval_seconds=1800) is None


@pytest.mark.parametrize(
    ("twilio", "code", "expected", "disable"),
    [
        ("queued", None, DeliveryStatus.SENDING, None),
        ("accepted", None, DeliveryStatus.SENDING, None),
        ("sent", None, DeliveryStatus.SENT, None),
        ("delivered", None, DeliveryStatus.DELIVERED, None),
        ("undelivered", "30003", DeliveryStatus.TEMPORARY_FAILURE, None),
        ("failed", "30006", DeliveryStatus.PERMANENT_FAILURE, None),
        ("failed", "21610", DeliveryStatus.PERMANENT_FAILURE, "opted_out"),
        ("undelivered", "0", DeliveryStatus.TEMPORARY_FAILURE, None),
    ],
)
def test_twilio_statuses_map_to_notify_statuses(
    twilio: str, code: str | None, expected: DeliveryStatus, disable: str | None
) -> None:
    receipt = message_receipt(twilio, code)
    assert receipt is not None
    assert receipt.status is expected
    assert receipt.disable == disable


def test_unknown_twilio_status_is_not_guessed() -> None:
    assert message_receipt("teleported", None) is None


def test_send_errors_map_to_failures_and_disable_only_for_opt_out_or_hard_bounce() -> None:
    assert sms_failure("20500", permanent=False).status is DeliveryStatus.TEMPORARY_FAILURE
    opted_out = sms_failure("21610", permanent=False)
    assert (opted_out.status, opted_out.disable) == (DeliveryStatus.PERMANENT_FAILURE, "opted_out")
    bounce = email_failure("550", permanent=True)
    assert (bounce.status, bounce.disable) == (DeliveryStatus.PERMANENT_FAILURE, "hard_bounce")
    invalid = sms_failure("21211", permanent=True)
    assert (invalid.status, invalid.disable) == (DeliveryStatus.PERMANENT_FAILURE, None)
    assert email_failure("451", permanent=False).disable is None


@pytest.mark.parametrize("code", ["550", "551", "553", "5.1.1", "5.1.10", "5.2.1", "5.2.2"])
def test_a_recipient_refusal_disables_the_address(code: str) -> None:
    receipt = email_failure(code, permanent=True)
    assert (receipt.status, receipt.disable) == (DeliveryStatus.PERMANENT_FAILURE, "hard_bounce")


@pytest.mark.parametrize("code", ["MAIL 550", "DATA 550", "DATA 554", "5.7.1", "554", "552"])
def test_a_refusal_of_our_sender_content_or_policy_is_a_technical_failure_not_a_bounce(code: str) -> None:
    receipt = email_failure(code, permanent=True)
    assert (receipt.status, receipt.disable) == (DeliveryStatus.TECHNICAL_FAILURE, None)


def test_status_only_moves_forward() -> None:
    assert is_progress(DeliveryStatus.SENDING, DeliveryStatus.SENT)
    assert is_progress(DeliveryStatus.SENT, DeliveryStatus.DELIVERED)
    assert not is_progress(DeliveryStatus.DELIVERED, DeliveryStatus.SENT)
    assert not is_progress(DeliveryStatus.SENT, DeliveryStatus.SENDING)
    assert not is_progress(DeliveryStatus.DELIVERED, DeliveryStatus.PERMANENT_FAILURE)


def test_attempt_references_are_distinct_per_attempt() -> None:
    assert attempt_reference("n-1", 1) != attempt_reference("n-1", 2)
    assert attempt_reference("n-1", 1) == attempt_reference("n-1", 1)
