"""What a handed-off notice costs: CPU per process, PostgreSQL statements, and the quick run's regression check.

CPU comes from the kernel's accounting of each process (psutil reads ``/proc/<pid>/stat``), taken before and after a
phase; PostgreSQL's backends count through the postmaster. Statements come from ``pg_stat_statements``, one count
per service database: a little more than the round trips, since it also counts what runs inside functions
(``track = all``) and the statements asyncpg's pool runs to reset a connection it gets back.

After a run, ``python -m tests.bench.cost`` prints what delivery's count is made of: its most frequent statements over
the whole run (populating and the warm-up included), read from the run's PostgreSQL, restarted on its data for it.

The regression check must not depend on how busy the machine is, so it compares a ratio within one run: CPU seconds
(not wall time) of our processes per handed-off notice. Before the send-path work, two quick runs, one on an idle
machine and one beside a test suite at a load average of 9, measured 43.7 and 47.4 ms. The value is committed in
``baseline.json``; the quick run fails when it grows by more than half.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import asyncpg

from devservers.ports import repo_root
from devservers.postgres import LocalPostgres
from shared.acls import SERVICES

OURS = (*SERVICES, "postgres", "kafka")
"""The processes whose CPU a notice costs (the issue's measure): the services, PostgreSQL and Kafka. The sinks play
the provider and the load generator plays the agencies and victims; neither is ours to make cheaper."""

BASELINE = Path(__file__).with_name("baseline.json")
ALLOWED_GROWTH = 1.5
TARGET_MS_PER_NOTICE = 2.0


def ms_per_notice(cpu_seconds: Mapping[str, float], notices: int) -> dict[str, float]:
    """CPU milliseconds per handed-off notice, per process and for ``ours`` together."""
    if notices <= 0:
        return {}
    per_process = {name: round(1000 * seconds / notices, 3) for name, seconds in sorted(cpu_seconds.items())}
    ours = sum(seconds for name, seconds in cpu_seconds.items() if name.split("#")[0] in OURS)  # replicas count too
    per_process["ours"] = round(1000 * ours / notices, 3)
    return per_process


async def statement_counts(admin_dsn: str) -> dict[str, int]:
    """Statements executed so far, per database (``pg_stat_statements``; the extension is created on first use)."""
    connection = await asyncpg.connect(admin_dsn)
    try:
        await connection.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        rows = await connection.fetch(
            "SELECT d.datname, sum(s.calls)::bigint AS calls FROM pg_stat_statements s "
            "JOIN pg_database d ON d.oid = s.dbid GROUP BY d.datname"
        )
    finally:
        await connection.close()
    return {row["datname"]: int(row["calls"]) for row in rows}


async def top_statements(admin_dsn: str, database: str, limit: int = 15) -> list[tuple[int, str]]:
    """The most frequent statements of one database so far, as (calls, query): what a service's count is made of."""
    connection = await asyncpg.connect(admin_dsn)
    try:
        rows = await connection.fetch(
            "SELECT s.calls, s.query FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
            " WHERE d.datname = $1 ORDER BY s.calls DESC LIMIT $2",
            database,
            limit,
        )
    finally:
        await connection.close()
    return [(int(row["calls"]), " ".join(row["query"].split())) for row in rows]


def statements_by_service(before: Mapping[str, int], after: Mapping[str, int], prefix: str) -> dict[str, int]:
    """Per service, the statements between two counts (databases are named ``<prefix>_<service>``)."""
    return {
        service: after.get(f"{prefix}_{service}", 0) - before.get(f"{prefix}_{service}", 0)
        for service in SERVICES
        if f"{prefix}_{service}" in after
    }


def round_trips_per_notice(statements: Mapping[str, int], notices: int) -> dict[str, float]:
    if notices <= 0:
        return {}
    per_service = {service: round(count / notices, 2) for service, count in statements.items()}
    per_service["all"] = round(sum(statements.values()) / notices, 2)
    return per_service


def regression(measured_ms: float, baseline: Mapping[str, Any]) -> dict[str, Any]:
    limit = round(float(baseline["quick_ms_per_notice"]) * ALLOWED_GROWTH, 3)
    return {
        "baseline_ms_per_notice": baseline["quick_ms_per_notice"],
        "baseline_commit": baseline.get("commit"),
        "measured_ms_per_notice": measured_ms,
        "limit": limit,
        "ok": measured_ms <= limit,
    }


def read_baseline() -> dict[str, Any]:
    return dict(json.loads(BASELINE.read_text()))


def write_baseline(ms_per_notice: float, commit: str | None) -> None:
    BASELINE.write_text(
        json.dumps(
            {
                "quick_ms_per_notice": ms_per_notice,
                "commit": commit,
                "what": "CPU ms of our processes (services, PostgreSQL, Kafka) per handed-off notice over the measured "
                f"phases of `make bench ARGS=--quick`; the quick run fails above {ALLOWED_GROWTH}× this",
            },
            indent=2,
        )
        + "\n"
    )


async def _print_breakdown(admin_dsn: str, database: str) -> None:
    every = await top_statements(admin_dsn, database, limit=10_000)
    print(f"{sum(calls for calls, _ in every)} statements in {database}; the most frequent:")
    for calls, query in every[:25]:
        print(f"{calls:>8}  {query[:200]}")


def main(argv: list[str]) -> None:
    """Print a database's top statements from the last bench run (default: delivery's)."""
    service = argv[0] if argv else "delivery"
    postgres = LocalPostgres(
        repo_root(),
        "bench",
        instance_dir=repo_root() / ".local" / "bench" / "postgres",
        settings={"shared_preload_libraries": "'pg_stat_statements'", "pg_stat_statements.track": "all"},
    )
    admin_dsn = postgres.start()
    try:
        asyncio.run(_print_breakdown(admin_dsn, f"bench_{service}"))
    finally:
        postgres.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
