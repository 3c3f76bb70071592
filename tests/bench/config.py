"""The benchmark's parameters (all flags) and the quick mode."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from devservers.ports import repo_root


@dataclass(frozen=True)
class BenchConfig:
    rate: float = 100.0
    """Custody changes per second of the latency phase."""
    duration: float = 120.0
    cases: int = 500
    subscribers: int = 3
    """Verified SMS subscribers per case."""
    steps: tuple[float, ...] = (200.0, 400.0, 800.0, 1_200.0, 1_600.0)
    """Rates (changes/s) of the throughput phase, tried in order until one is not sustained."""
    step_duration: float = 30.0
    burst: int = 15_000
    """Records in the one mass-update feed, spread round-robin over the subscribed cases."""
    push_interval: float = 0.1
    """A steady feed is pushed as one batch this often (a real-time feed, not one request per record)."""
    max_in_flight: int = 32
    """Feed requests open at once; when the system is slower, the offered rate drops (and is reported)."""
    drain_timeout: float = 120.0
    """How long after a phase's last push its notices may take to be handed off before it counts as not drained."""
    burst_timeout: float = 300.0
    settle_timeout: float = 600.0
    """Before a phase, how long an earlier phase's backlog may take to clear (else the phase is skipped)."""
    p99_limit: float = 5.0
    """A throughput step is sustained when the feed→hand-off p99 stays under this and every notice arrives."""
    limit_seconds: float = 8.0
    """Duration of each raw Kafka / PostgreSQL measurement."""
    callback_delay: float = 0.05
    """The SMS sink's delay between 'queued', 'sent' and 'delivered'."""
    setup_concurrency: int = 64
    fast_postgres: bool = False
    """fsync off: not the honest default, only for comparison."""
    quick: bool = False
    delivery_processes: tuple[int, ...] = (1, 2)
    """Delivery processes to measure the steady rates with (the first is the latency/throughput search's)."""
    check_baseline: bool = False
    """Fail (exit 3) when CPU per notice grew by more than half against tests/bench/baseline.json."""
    write_baseline: bool = False
    env: tuple[tuple[str, str], ...] = ()
    """Extra service settings for an experiment (e.g. DELIVERY_DISPATCH_BATCH_SIZE=200); reported with the results."""
    work_dir: Path = field(default_factory=lambda: repo_root() / ".local" / "bench")
    out_dir: Path = field(default_factory=lambda: repo_root() / "test-artifacts")

    def as_json(self) -> dict[str, Any]:
        values = asdict(self)
        values["work_dir"], values["out_dir"] = str(self.work_dir), str(self.out_dir)
        values["steps"] = list(self.steps)
        values["delivery_processes"] = list(self.delivery_processes)
        values["env"] = dict(self.env)
        return values


QUICK = {
    "rate": 10.0,
    "duration": 4.0,
    "cases": 10,
    "steps": (20.0,),
    "step_duration": 3.0,
    "burst": 100,
    "drain_timeout": 15.0,
    "burst_timeout": 15.0,
    "settle_timeout": 30.0,
    "limit_seconds": 1.0,
    "delivery_processes": (1,),
}


def parse_arguments(argv: list[str] | None = None) -> BenchConfig:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench",
        description="Latency, throughput, a burst, memory and the raw Kafka/PostgreSQL limit of the whole system, "
        "run locally; writes a table, bench.json and bench.png.",
    )
    parser.add_argument("--quick", action="store_true", help="Everything small: a smoke run of under a minute.")
    parser.add_argument("--rate", type=float, help="Changes/s of the latency phase (default 100).")
    parser.add_argument("--duration", type=float, help="Seconds of the latency phase (default 120).")
    parser.add_argument("--cases", type=int, help="Subscribed cases (default 500).")
    parser.add_argument("--subscribers", type=int, help="Verified SMS subscribers per case (default 3).")
    parser.add_argument(
        "--steps",
        help="Throughput rates above --rate to step up through, comma-separated (default 200,400,800,1200,1600; "
        "'' skips); when --rate itself is not sustained, the search halves it instead.",
    )
    parser.add_argument("--step-duration", type=float, help="Seconds per throughput step (default 30).")
    parser.add_argument("--burst", type=int, help="Records in the mass-update feed (default 15000; 0 skips).")
    parser.add_argument("--drain-timeout", type=float, help="Seconds a phase's notices may lag its last push (120).")
    parser.add_argument("--burst-timeout", type=float, help="Seconds the burst's notices may take (default 300).")
    parser.add_argument(
        "--settle-timeout", type=float, help="Seconds an earlier backlog may take to clear before a phase (600)."
    )
    parser.add_argument(
        "--delivery-processes",
        help="Delivery process counts to run the steady rates with, comma-separated (default 1,2; quick: 1).",
    )
    parser.add_argument("--check-baseline", action="store_true", help="Exit 3 if CPU/notice grew > 50%% vs baseline.")
    parser.add_argument("--write-baseline", action="store_true", help="Record this run's CPU/notice as the baseline.")
    parser.add_argument("--fast-postgres", action="store_true", help="PostgreSQL with fsync off (not honest).")
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="A service setting to try (repeatable)."
    )
    parser.add_argument("--work-dir", type=Path, help="Where Kafka, PostgreSQL and the logs live (.local/bench).")
    parser.add_argument("--out", type=Path, dest="out_dir", help="Where bench.json and bench.png go.")
    arguments = parser.parse_args(argv)
    values: dict[str, Any] = dict(QUICK) if arguments.quick else {}
    values["quick"] = arguments.quick
    for name in (
        "rate",
        "duration",
        "cases",
        "subscribers",
        "step_duration",
        "burst",
        "drain_timeout",
        "burst_timeout",
        "settle_timeout",
    ):
        given = getattr(arguments, name)
        if given is not None:
            values[name] = given
    if arguments.steps is not None:
        values["steps"] = tuple(float(step) for step in arguments.steps.split(",") if step.strip())
    if arguments.delivery_processes is not None:
        values["delivery_processes"] = tuple(int(n) for n in arguments.delivery_processes.split(",") if n.strip())
    values["check_baseline"], values["write_baseline"] = arguments.check_baseline, arguments.write_baseline
    if arguments.fast_postgres:
        values["fast_postgres"] = True
    if arguments.env:
        if any("=" not in item for item in arguments.env):
            parser.error("--env takes KEY=VALUE")
        values["env"] = tuple(tuple(item.split("=", 1)) for item in arguments.env)
    if arguments.work_dir is not None:
        values["work_dir"] = arguments.work_dir.resolve()
    if arguments.out_dir is not None:
        values["out_dir"] = arguments.out_dir.resolve()
    config = BenchConfig(**values)
    if config.cases < 1 or config.subscribers < 1 or config.rate <= 0 or config.duration <= 0:
        parser.error("--cases, --subscribers, --rate and --duration must be positive")
    counts = config.delivery_processes
    if not counts or counts[0] != 1 or list(counts) != sorted(set(counts)):
        parser.error("--delivery-processes starts at 1 and rises, e.g. 1,2")
    return config
