"""``python -m tests.bench [--quick] [--rate R] [--duration D] [--cases C] [--subscribers S] [--burst N] ...``

Latency at a steady rate, the highest sustained rate, one mass-update burst, peak memory of each service, and the
raw Kafka/PostgreSQL limit on the same servers; prints a table and writes bench.json and bench.png.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from tests.bench.config import parse_arguments
from tests.bench.report import chart, send_path_verdicts, table, verdicts, write_json
from tests.bench.runner import Runner


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = parse_arguments(argv)
    runner = Runner(config)
    results = asyncio.run(runner.run())
    results["targets"] = verdicts(results)
    results["send_path_targets"] = send_path_verdicts(results, results["targets"])
    write_json(results, config.out_dir / "bench.json")
    chart(runner.phases, config.out_dir / "bench.png")
    print()
    print(table(results))
    print(f"\nwrote {config.out_dir / 'bench.json'} and {config.out_dir / 'bench.png'}")
    regression = results["cost"].get("regression")
    if regression and not regression["ok"]:
        print("CPU per notice grew by more than half against tests/bench/baseline.json", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
