"""The calling pattern is a setting per event class and channel: urgent calls every 30 min for 24 h, every 2 h after
a machine or an unconfirmed answer, busy lines at the next repeat; informational notices once."""

from __future__ import annotations

import pytest

from services.delivery.domain import SENT_ONCE, RepeatPattern, RepeatPatterns
from services.delivery.settings import DeliverySettings
from shared.events import NotificationKind
from shared.vocabulary import Channel, Urgency


def test_the_default_voice_pattern_is_the_incumbents() -> None:
    repeats = DeliverySettings(environment="test").repeats()
    voice = repeats.of(NotificationKind.STATUS_CHANGE, Urgency.URGENT, Channel.VOICE)
    assert voice == RepeatPattern(
        interval_seconds=1800, window_seconds=86400, unconfirmed_interval_seconds=7200, failures_wait_for_repeat=True
    )
    assert repeats.of(NotificationKind.STATUS_CHANGE, Urgency.INFORMATIONAL, Channel.VOICE) == SENT_ONCE
    assert not SENT_ONCE.repeats


def test_sms_and_email_keep_the_global_urgent_repeat_and_retry_failures_sooner() -> None:
    repeats = DeliverySettings(environment="test", repeat_interval_seconds=600, repeat_window_seconds=3600).repeats()
    for channel in (Channel.SMS, Channel.EMAIL):
        pattern = repeats.of(NotificationKind.STATUS_CHANGE, Urgency.URGENT, channel)
        assert (pattern.interval_seconds, pattern.window_seconds) == (600, 3600)
        assert pattern.unconfirmed_interval_seconds is None
        assert not pattern.failures_wait_for_repeat
        assert repeats.of(NotificationKind.STATUS_CHANGE, Urgency.INFORMATIONAL, channel) == SENT_ONCE


def test_patterns_are_read_from_the_environment_per_class_and_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "DELIVERY_REPEAT_PATTERNS",
        '{"informational": {"voice": {"interval_seconds": 3600, "window_seconds": 7200}},'
        ' "urgent": {"sms": {"interval_seconds": 900}}}',
    )
    repeats = DeliverySettings(environment="test").repeats()
    assert repeats.of(NotificationKind.STATUS_CHANGE, Urgency.INFORMATIONAL, Channel.VOICE).interval_seconds == 3600
    assert repeats.of(NotificationKind.STATUS_CHANGE, Urgency.URGENT, Channel.SMS).interval_seconds == 900
    # Naming some pairs replaces the defaults: voice falls back to the global urgent repeat then.
    assert (
        repeats.of(NotificationKind.STATUS_CHANGE, Urgency.URGENT, Channel.VOICE).unconfirmed_interval_seconds is None
    )


@pytest.mark.parametrize("bad", ['{"urgent": {"fax": {}}}', '{"urgent": {"voice": {"interval_seconds": 0}}}'])
def test_a_bad_pattern_stops_the_service_at_start(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("DELIVERY_REPEAT_PATTERNS", bad)
    with pytest.raises(ValueError, match="repeat_patterns"):
        DeliverySettings(environment="test")


def test_an_explicit_pattern_wins_over_the_urgent_default() -> None:
    custom = RepeatPattern(interval_seconds=60)
    repeats = RepeatPatterns(
        urgent=RepeatPattern(interval_seconds=1800), by_class={Urgency.URGENT: {Channel.SMS: custom}}
    )
    assert repeats.of(NotificationKind.STATUS_CHANGE, Urgency.URGENT, Channel.SMS) is custom
    assert repeats.of(NotificationKind.STATUS_CHANGE, Urgency.URGENT, Channel.EMAIL).interval_seconds == 1800


@pytest.mark.parametrize("kind", [NotificationKind.VERIFICATION, NotificationKind.SUBSCRIPTION_CHANGED])
@pytest.mark.parametrize("channel", list(Channel))
def test_what_a_person_just_asked_for_is_sent_once_even_when_urgent(kind: NotificationKind, channel: Channel) -> None:
    assert DeliverySettings(environment="test").repeats().of(kind, Urgency.URGENT, channel) == SENT_ONCE
