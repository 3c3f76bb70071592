"""``python -m tests.bench --quick`` runs to the end and writes a complete report. A smoke test: no timing asserted."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from shared.acls import SERVICES

pytestmark = [pytest.mark.slow, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
SUMMARY_KEYS = {"count", "missing", "p50", "p95", "p99", "max", "mean"}


@pytest.mark.timeout(900)
def test_quick_bench_writes_every_section(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # Under the repository, not tmp_path: as root, PostgreSQL runs as 'postgres', which cannot enter pytest's dirs.
    work = ROOT / ".local" / f"bench-smoke-{uuid.uuid4().hex[:8]}"
    try:
        run = subprocess.run(
            [
                *(sys.executable, "-m", "tests.bench", "--quick", "--check-baseline"),
                *("--work-dir", str(work), "--out", str(out)),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=840,
            check=False,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    check_report(out, run.stdout)


def check_report(out: Path, stdout: str) -> None:
    """The table was printed, and bench.json and bench.png are complete."""
    assert "Feed accepted → provider hand-off" in stdout
    assert "Targets (issue 9):" in stdout
    assert "Targets (issue 20, the send path):" in stdout
    assert "Regression check:" in stdout
    results = json.loads((out / "bench.json").read_text())
    sections = ("machine", "parameters", "phases", "throughput", "burst", "memory_peak_mb", "limits", "targets", "cost")
    for section in sections:
        assert section in results, section
    assert results["parameters"]["quick"] is True
    assert {"warmup", "latency", "burst"} <= set(results["phases"])
    # The throughput search steps up or down from the latency rate; every step it tried ran (or says why not).
    tried = results["throughput"]["steps_tried"]
    assert tried
    assert all(step in results["phases"] or step in results["skipped"] for step in tried)
    for name, phase in results["phases"].items():
        assert set(phase["feed_to_handoff_seconds"]) == SUMMARY_KEYS, name
        assert phase["changes_accepted"] > 0, name
    latency = results["phases"]["latency"]
    # The pipeline works end to end: notices of the measured changes reached the provider, with receipts.
    assert latency["notices_handed_off"] > 0
    assert latency["feed_to_delivered_seconds"]["count"] > 0
    assert set(results["memory_peak_mb"]) == set(SERVICES)
    assert all(value > 0 for value in results["memory_peak_mb"].values())
    assert results["limits"]["kafka"]["messages"] > 0
    assert results["limits"]["postgres"]["single_row_commits_per_second"] > 0
    assert results["limits"]["postgres"]["batched_rows_per_second"] > 0
    assert set(results["targets"]) == {
        "p99 feed→hand-off at the latency rate (s)",
        "sustained changes/s",
        "burst: last notice handed off (s)",
        "largest service RSS (MB)",
    }
    assert (out / "bench.png").read_bytes().startswith(b"\x89PNG")
    cost = results["cost"]
    # Every service and the servers were measured, and each notice took some statements of delivery's database.
    assert {*SERVICES, "postgres", "kafka", "ours"} <= set(cost["cpu_ms_per_notice"])
    assert cost["round_trips_per_notice"]["delivery"] > 0
    assert cost["regression"]["ok"], cost["regression"]
