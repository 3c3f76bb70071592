"""``python -m devservers up|down|status``: the shared local dev servers.

``up`` starts (or reuses) one Kafka broker and one PostgreSQL cluster in the
background, records them in ``.local/infra.json`` and writes
``.local/infra.env`` (``KAFKA_BOOTSTRAP_SERVERS`` and ``DATABASE_URL``) for
services, Makefiles and tests to source. ``down`` stops them.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import sys
import time
from pathlib import Path

from devservers.kafka import LocalKafka
from devservers.ports import repo_root
from devservers.postgres import LocalPostgres

INSTANCE = "dev"


def _paths(root: Path) -> tuple[Path, Path]:
    local = root / ".local"
    return local / "infra.json", local / "infra.env"


def _servers(root: Path, fast: bool = False) -> tuple[LocalKafka, LocalPostgres]:
    return LocalKafka(root, INSTANCE), LocalPostgres(root, INSTANCE, fast=fast)


def up(root: Path, fast: bool) -> int:
    kafka, postgres = _servers(root, fast)
    t0 = time.monotonic()
    if kafka.is_running() and postgres.is_running():
        print("Kafka and PostgreSQL already running; checking they answer...", file=sys.stderr)
    else:
        print("starting Kafka and PostgreSQL (the first run resolves the Kafka jars with Maven)...", file=sys.stderr)
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        kafka_future = pool.submit(kafka.start)
        postgres_future = pool.submit(postgres.start)
        errors = []
        for future in (kafka_future, postgres_future):
            try:
                future.result()
            except Exception as err:  # noqa: BLE001 - report both failures, not just the first
                errors.append(err)
    if errors:
        for error in errors:
            print(f"error: {error}", file=sys.stderr)
        return 1
    infra_json, infra_env = _paths(root)
    infra = {
        "kafka": {
            "pid": kafka.pid,
            "bootstrap_servers": kafka.bootstrap,
            "port": kafka.port,
            "controller_port": kafka.controller_port,
            "cluster_id": kafka.cluster_id,
            "data_dir": str(kafka.data_dir),
            "log": str(kafka.server_log),
        },
        "postgres": {
            "pid": postgres.pid,
            "dsn": postgres.dsn,
            "port": postgres.port,
            "data_dir": str(postgres.data_dir),
            "log": str(postgres.log_file),
        },
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    infra_json.write_text(json.dumps(infra, indent=2) + "\n")
    env = f"KAFKA_BOOTSTRAP_SERVERS={kafka.bootstrap}\nDATABASE_URL={postgres.dsn}\n"
    infra_env.write_text(env)
    print(f"up in {time.monotonic() - t0:.1f}s; wrote {infra_env}", file=sys.stderr)
    print(env, end="")
    return 0


def down(root: Path) -> int:
    kafka, postgres = _servers(root)
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(kafka.stop), pool.submit(postgres.stop)]:
            future.result()
    for path in _paths(root):
        path.unlink(missing_ok=True)
    print("stopped Kafka and PostgreSQL", file=sys.stderr)
    return 0


def status(root: Path) -> int:
    kafka, postgres = _servers(root)
    up_count = 0
    if kafka.pid is not None:
        up_count += 1
        print(f"kafka:    running pid={kafka.pid} bootstrap={kafka.bootstrap}")
    else:
        print("kafka:    stopped")
    if postgres.pid is not None:
        up_count += 1
        print(f"postgres: running pid={postgres.pid} dsn={postgres.dsn}")
    else:
        print("postgres: stopped")
    infra_env = _paths(root)[1]
    if infra_env.exists():
        print(f"env file: {infra_env}")
    return 0 if up_count == 2 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devservers",
        description="Run local Kafka + PostgreSQL for development (no Docker needed).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up_parser = sub.add_parser("up", help="start (or reuse) the servers and write .local/infra.env")
    up_parser.add_argument(
        "--fast",
        action="store_true",
        help="PostgreSQL without fsync (faster; data may be lost on a machine crash); "
        "applies on the next (re)start of the cluster",
    )
    sub.add_parser("down", help="stop the servers and remove .local/infra.{json,env}")
    sub.add_parser("status", help="show what is running (exit 1 unless both are up)")
    args = parser.parse_args(argv)
    root = repo_root()
    if args.command == "up":
        return up(root, args.fast)
    if args.command == "down":
        return down(root)
    return status(root)


if __name__ == "__main__":
    sys.exit(main())
