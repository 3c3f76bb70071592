"""When a burst of urgent changes is a storm: the pure rule and its explanation."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.ingest.storm_holds.domain import StormPolicy, check_storm, is_urgent
from shared.vocabulary import CustodyStatus

POLICY = StormPolicy(window_minutes=10, population_share=0.1, min_changes=50, rate_multiple=10)


def test_the_floor_protects_small_jails() -> None:
    assert not check_storm(POLICY, urgent_in_window=50, in_custody=100, urgent_in_baseline=0).is_storm
    assert check_storm(POLICY, urgent_in_window=51, in_custody=100, urgent_in_baseline=0).is_storm


def test_a_share_of_the_population_bounds_large_jails() -> None:
    check = check_storm(POLICY, urgent_in_window=1_000, in_custody=12_000, urgent_in_baseline=0)
    assert check.threshold == 1_200
    assert not check.is_storm
    assert check_storm(POLICY, urgent_in_window=1_201, in_custody=12_000, urgent_in_baseline=0).is_storm


def test_an_agency_that_usually_sends_many_is_judged_by_its_usual_rate() -> None:
    # 1,008 ten-minute windows in a week; 100,800 urgent changes = 100 per window; 10x = 1,000.
    check = check_storm(POLICY, urgent_in_window=900, in_custody=1_000, urgent_in_baseline=100_800)
    assert check.threshold == 1_000
    assert not check.is_storm


def test_the_trigger_says_why_in_numbers() -> None:
    check = check_storm(POLICY, urgent_in_window=1_000, in_custody=1_100, urgent_in_baseline=0)
    assert check.is_storm
    text = check.trigger()
    assert "1,000 urgent changes" in text
    assert "threshold 110" in text
    assert "10% of 1,100 in custody" in text


def test_only_safety_relevant_statuses_are_urgent() -> None:
    assert {status for status in CustodyStatus if is_urgent(status)} == {
        CustodyStatus.RELEASED,
        CustodyStatus.ESCAPED,
        CustodyStatus.REMOVED,
        CustodyStatus.DECEASED,
    }


@given(
    urgent=st.integers(0, 100_000),
    in_custody=st.integers(0, 100_000),
    baseline=st.integers(0, 10_000_000),
)
def test_the_threshold_is_never_below_any_bound(urgent: int, in_custody: int, baseline: int) -> None:
    check = check_storm(POLICY, urgent_in_window=urgent, in_custody=in_custody, urgent_in_baseline=baseline)
    assert check.threshold >= POLICY.min_changes
    assert check.threshold >= POLICY.population_share * in_custody
    assert check.threshold >= POLICY.rate_multiple * baseline / POLICY.windows_per_baseline - 1e-6
    assert check.is_storm == (urgent > check.threshold)
