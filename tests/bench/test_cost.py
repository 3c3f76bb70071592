"""What a notice costs, as the bench adds it up: pure arithmetic, no servers."""

from __future__ import annotations

import pytest

from tests.bench import cost


def test_ms_per_notice_counts_ours_and_replicas_but_not_the_sinks_or_the_load_generator() -> None:
    seconds = {"delivery": 1.0, "delivery#2": 0.5, "postgres": 0.5, "kafka": 0.5, "sinks": 4.0, "load generator": 2.0}
    per_notice = cost.ms_per_notice(seconds, notices=500)
    assert per_notice["ours"] == pytest.approx(5.0)
    assert per_notice["sinks"] == pytest.approx(8.0)
    assert cost.ms_per_notice(seconds, notices=0) == {}


def test_statements_are_counted_per_service_database_between_two_counts() -> None:
    before = {"bench_delivery": 100, "bench_ops": 10, "postgres": 5}
    after = {"bench_delivery": 400, "bench_ops": 70, "bench_ingest": 30, "postgres": 50}
    statements = cost.statements_by_service(before, after, "bench")
    assert statements == {"ingest": 30, "delivery": 300, "ops": 60}
    assert cost.round_trips_per_notice(statements, 30) == {"ingest": 1.0, "delivery": 10.0, "ops": 2.0, "all": 13.0}


def test_the_regression_check_allows_half_again_the_baseline_and_no_more() -> None:
    baseline = {"quick_ms_per_notice": 40.0, "commit": "abc"}
    assert cost.regression(60.0, baseline)["ok"]
    assert not cost.regression(60.1, baseline)["ok"]
    assert cost.read_baseline()["quick_ms_per_notice"] > 0
