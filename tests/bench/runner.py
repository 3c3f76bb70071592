"""The run: start everything, subscribe, then latency, throughput, burst and the raw limits; collect; report."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import platform
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped]
from prometheus_client.parser import text_string_to_metric_families

from devservers.kafka import LocalKafka
from devservers.ports import repo_root
from devservers.postgres import LocalPostgres, ensure_database
from devservers.stack import Stack
from shared.acls import SERVICES
from shared.topics import CUSTODY_STATUS_CHANGED, NOTIFICATION_REQUESTED
from tests.bench import cost, limits, stages
from tests.bench.analysis import PhaseResult
from tests.bench.config import BenchConfig
from tests.bench.memory import MemorySampler
from tests.bench.system import DATABASE_PREFIX, TOPIC_PREFIX, Bench, PushStats, running_system

log = logging.getLogger(__name__)


class CpuMeter:
    """CPU seconds of every process of the run (each service and replica, the sinks, Kafka, PostgreSQL, this load
    generator); a replica started later is measured from its start."""

    def __init__(self, stack: Stack, kafka: LocalKafka, postgres: LocalPostgres) -> None:
        self._stack = stack
        self._servers = {"kafka": kafka.pid or 0, "postgres": postgres.pid or 0, "load generator": os.getpid()}

    def snapshot(self) -> dict[str, float]:
        """CPU seconds so far; children that already exited (PostgreSQL backends) count through their parent."""
        pids = {name: process.pid for name, process in self._stack.processes.items() if process.poll() is None}
        seconds: dict[str, float] = {}
        for name, pid in (pids | self._servers).items():
            try:
                process = psutil.Process(pid)
                times = process.cpu_times()
                total = times.user + times.system + times.children_user + times.children_system
                if name != "load generator":
                    for child in process.children(recursive=True):
                        with contextlib.suppress(psutil.Error):
                            child_times = child.cpu_times()
                            total += child_times.user + child_times.system
                seconds[name] = total
            except psutil.Error:
                seconds[name] = 0.0
        return seconds


def code_version() -> dict[str, Any]:
    """The commit measured, and how many files differed from it (the working tree is what ran)."""
    root = repo_root()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "uncommitted_files": None}
    return {"commit": commit, "uncommitted_files": len(changed)}


def machine() -> dict[str, Any]:
    memory = psutil.virtual_memory()
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": psutil.cpu_count(),
        "memory_gb": round(memory.total / 1024**3, 1),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


async def service_profile(client: httpx.AsyncClient, stack: Stack) -> dict[str, dict[str, dict[str, float]]]:
    """Per service, per consumer topic: events handled and mean seconds per event (``cw_consumer_handle_seconds``)."""
    profile: dict[str, dict[str, dict[str, float]]] = {}
    for service in SERVICES:
        try:
            text = (await client.get(f"{stack.url(service)}/metrics")).text
        except httpx.HTTPError:
            continue
        sums: dict[str, dict[str, float]] = {}
        for family in text_string_to_metric_families(text):
            if family.name != "cw_consumer_handle_seconds":
                continue
            for sample in family.samples:
                topic = sample.labels.get("topic", "").removeprefix(TOPIC_PREFIX)
                entry = sums.setdefault(topic, {"events": 0.0, "seconds": 0.0})
                if sample.name.endswith("_count"):
                    entry["events"] = sample.value
                elif sample.name.endswith("_sum"):
                    entry["seconds"] = sample.value
        profile[service] = {
            topic: {
                "events": int(entry["events"]),
                "total_seconds": round(entry["seconds"], 2),
                "ms_per_event": round(1000 * entry["seconds"] / entry["events"], 3) if entry["events"] else 0.0,
            }
            for topic, entry in sums.items()
            if entry["events"]
        }
    return profile


class Runner:
    def __init__(self, config: BenchConfig) -> None:
        self.config = config
        self.results: dict[str, Any] = {
            "started_at": datetime.now(UTC).isoformat(),
            "machine": machine(),
            "code": code_version(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "parameters": config.as_json(),
            "postgres": "fsync off (fast)" if config.fast_postgres else "fsync on, synchronous_commit on (defaults)",
            "kafka": "single KRaft broker, default flush policy (page cache; acks=all)",
        }
        self.phases: dict[str, PhaseResult] = {}
        self.bootstrap = ""
        self.admin_dsn = ""

    def say(self, message: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)

    async def run(self) -> dict[str, Any]:
        started = time.monotonic()
        self.say(f"starting Kafka, PostgreSQL (fsync {'off' if self.config.fast_postgres else 'on'}) and the stack")
        with running_system(self.config) as (stack, kafka, postgres):
            self.results["startup_seconds"] = round(time.monotonic() - started, 1)
            self.admin_dsn = postgres.dsn
            sampler = MemorySampler({name: stack.processes[name].pid for name in SERVICES})
            sampler.start()
            try:
                async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=200)) as client:
                    await self.measure(stack, kafka, postgres, client, sampler)
            finally:
                sampler.stop()
            self.results["memory_peak_mb"] = {name: round(value, 1) for name, value in sampler.overall().items()}
            self.results["memory_peak_mb_by_phase"] = {
                phase: {name: round(value, 1) for name, value in peaks.items()}
                for phase, peaks in sampler.peaks.items()
            }
        self.results["phases"] = {name: phase.as_json() for name, phase in self.phases.items()}
        self.results["cost"] = self.cost()
        self.results["total_seconds"] = round(time.monotonic() - started, 1)
        self.results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        return self.results

    async def measure(
        self,
        stack: Stack,
        kafka: LocalKafka,
        postgres: LocalPostgres,
        client: httpx.AsyncClient,
        sampler: MemorySampler,
    ) -> None:
        config = self.config
        bench = Bench(stack, client, config, uuid.uuid4().hex[:6])
        cpu = CpuMeter(stack, kafka, postgres)
        self.bootstrap = kafka.bootstrap
        self.results["skipped"] = {}
        await bench.configure_sink()
        subscribers = config.cases * config.subscribers
        self.say(f"subscribing and verifying {subscribers} SMS contacts on {config.cases} cases")
        self.results["setup_seconds"] = round(await bench.populate(), 1)

        # Warm-up: one booking per case. When all its notices are out, matching knows every verified subscriber.
        await bench.wait_quiet(timeout=config.drain_timeout)
        await bench.clear_sink()
        self.say("warm-up: one change per case")
        await self.phase(
            bench, cpu, sampler, name="warmup", rate=None, load=lambda: self._one_feed(bench, "warmup", config.cases)
        )

        self.say(f"latency: {config.rate:g} changes/s for {config.duration:g} s")
        latency = await self.phase(
            bench,
            cpu,
            sampler,
            name="latency",
            rate=config.rate,
            load=lambda: bench.steady("latency", config.rate, config.duration),
            with_delivered=True,
        )
        await self.throughput(bench, cpu, sampler, latency)
        await self.scale_out(stack, bench, cpu, sampler)

        sampler.phase = "limits"
        await bench.wait_quiet(timeout=config.settle_timeout)
        self.results["limits_on_quiet_system"] = bench.quiet
        self.say("the limit: raw aiokafka and asyncpg on the same servers")
        self.results["service_profile"] = await service_profile(client, stack)
        await self.limits(kafka, postgres)

        if config.burst:
            self.say(f"burst: one feed of {config.burst} records over the {config.cases} cases")
            burst = await self.phase(
                bench,
                cpu,
                sampler,
                name="burst",
                rate=None,
                load=lambda: self._one_feed(bench, "burst", config.burst),
                burst=True,
            )
            if burst is not None:
                self.results["burst"] = {
                    "records": config.burst,
                    "records_per_case": round(config.burst / config.cases, 1),
                    "feed_request_seconds": round(burst.pushes.request_seconds[0], 3)
                    if burst.pushes.request_seconds
                    else None,
                    "notices_expected": burst.expected,
                    "notices_handed_off": len(burst.handoffs),
                    "seconds_until_last_handed_off": round(burst.last_handoff - burst.start, 3)
                    if burst.last_handoff and burst.drained
                    else None,
                    "notices_per_second": round(burst.notices_per_second_to_last(), 1),
                }
        self.results.setdefault("burst", {"records": config.burst, "skipped": True})

    async def throughput(
        self, bench: Bench, cpu: CpuMeter, sampler: MemorySampler, latency: PhaseResult | None
    ) -> None:
        """Step up from the latency rate while each step is sustained; if even the latency rate was not, step
        down (halving) to find one that is."""
        config = self.config
        if latency is not None and latency.sustained(config.p99_limit, config.duration):
            plan = [rate for rate in config.steps if rate > config.rate]
            direction = "up"
        else:
            plan = [config.rate / 2**k for k in range(1, 4) if config.rate / 2**k >= 1]
            direction = "down (the latency rate was not sustained)"
        sustained: list[PhaseResult] = []
        tried: list[str] = []
        limit_found = False
        for rate in plan if config.steps else []:
            name = f"throughput@{rate:g}"
            tried.append(name)
            self.say(f"throughput step: {rate:g} changes/s for {config.step_duration:g} s")
            step = await self.phase(
                bench,
                cpu,
                sampler,
                name=name,
                rate=rate,
                load=functools.partial(bench.steady, name, rate, config.step_duration),
            )
            if step is None:
                limit_found = True
                break
            ok = step.sustained(config.p99_limit, config.step_duration)
            p99 = step.p99
            self.say(
                f"  {len(step.accepted) / step.window:.0f} changes/s accepted, p99 "
                f"{'-' if p99 is None else f'{p99:.2f}'} s, {'sustained' if ok else 'NOT sustained'}"
            )
            if ok:
                sustained.append(step)
            going_up = direction == "up"
            if ok != going_up:
                limit_found = True
                break  # up: the first step not sustained ends it; down: the first sustained one does
        if latency is not None and latency.sustained(config.p99_limit, config.duration):
            sustained.append(latency)
        best = max(sustained, key=lambda s: s.rate or 0.0, default=None)
        self.results["throughput"] = {
            "criterion": f"feed→hand-off p99 < {config.p99_limit:g} s, every notice handed off within "
            f"{config.drain_timeout:g} s of the last push, ≥ 95% of the offered changes accepted",
            "search": direction,
            "limit_found": limit_found or direction != "up",
            "steps_tried": tried,
            "sustained_from": best.name if best else None,
            "sustained_changes_per_second": best.rate if best else None,
            "accepted_changes_per_second": round(len(best.accepted) / best.window, 1) if best else None,
            "notices_per_second": round(best.notices_per_second(), 1) if best else None,
        }

    async def scale_out(self, stack: Stack, bench: Bench, cpu: CpuMeter, sampler: MemorySampler) -> None:
        """The steady rates again with more delivery processes sharing the claims and the provider rate; the
        replicas are stopped afterwards, so the burst measures one process like the rest."""
        config = self.config
        replicas: list[str] = []
        outcome: dict[str, Any] = {}
        try:
            for processes in config.delivery_processes[1:]:
                while len(replicas) < processes - 1:
                    replicas.append(stack.start_replica("delivery"))
                    await asyncio.to_thread(stack.wait_ready, replicas[-1])
                best: float | None = None
                for rate in (config.rate, *config.steps):
                    name = f"delivery×{processes}@{rate:g}"
                    self.say(f"{processes} delivery processes: {rate:g} changes/s for {config.step_duration:g} s")
                    step = await self.phase(
                        bench,
                        cpu,
                        sampler,
                        name=name,
                        rate=rate,
                        load=functools.partial(bench.steady, name, rate, config.step_duration),
                    )
                    if step is None or not step.sustained(config.p99_limit, config.step_duration):
                        break
                    best = rate
                outcome[str(processes)] = {"sustained_changes_per_second": best}
        finally:
            for name in replicas:
                stack.stop_service(name)
        one = self.results.get("throughput", {}).get("sustained_changes_per_second")
        self.results["delivery_processes"] = {"1": {"sustained_changes_per_second": one}} | outcome

    def cost(self) -> dict[str, Any]:
        """CPU and statements per handed-off notice over the measured phases (the warm-up pays one-off costs, so it
        is left out), and the check against the committed baseline."""
        measured = [phase for name, phase in self.phases.items() if name != "warmup"]
        notices = sum(len(phase.handoffs) for phase in measured)
        cpu_seconds: dict[str, float] = {}
        statements: dict[str, int] = {}
        for phase in measured:
            for process, seconds in phase.cpu_seconds.items():
                cpu_seconds[process.split("#")[0]] = cpu_seconds.get(process.split("#")[0], 0.0) + seconds
            for service, count in phase.statements.items():
                statements[service] = statements.get(service, 0) + count
        per_notice = cost.ms_per_notice(cpu_seconds, notices)
        summary: dict[str, Any] = {
            "notices": notices,
            "cpu_ms_per_notice": per_notice,
            "round_trips_per_notice": cost.round_trips_per_notice(statements, notices),
        }
        if per_notice and self.config.check_baseline:
            summary["regression"] = cost.regression(per_notice["ours"], cost.read_baseline())
        if per_notice and self.config.write_baseline:
            cost.write_baseline(per_notice["ours"], self.results["code"]["commit"])
        return summary

    async def _one_feed(self, bench: Bench, phase: str, records: int) -> tuple[float, float]:
        start = time.time()
        await bench.push(bench.records(records), phase)
        return start, time.time()

    async def phase(
        self,
        bench: Bench,
        cpu: CpuMeter,
        sampler: MemorySampler,
        *,
        name: str,
        rate: float | None,
        load: Callable[[], Awaitable[tuple[float, float]]],
        with_delivered: bool = False,
        burst: bool = False,
    ) -> PhaseResult | None:
        """Run one load to the end, wait for its notices, and tie each notice back to its change. Skipped (None)
        when the previous phase's backlog does not clear: its numbers would describe that backlog."""
        timeout = self.config.burst_timeout if burst else self.config.drain_timeout
        baseline = await bench.wait_quiet(timeout=self.config.settle_timeout)
        if not bench.quiet:
            reason = f"an earlier backlog was still being sent after {self.config.settle_timeout:g} s more"
            self.results["skipped"][name] = reason
            self.say(f"  {name} skipped: {reason}")
            return None
        since = datetime.now(UTC) - timedelta(seconds=1)
        sampler.phase = name
        statements_before = await cost.statement_counts(self.admin_dsn)
        cpu_before, clock_before = cpu.snapshot(), time.monotonic()
        start, end = await load()
        expected = sum(1 for change in bench.changes.values() if change.phase == name) * self.config.subscribers
        drained = await bench.wait_handed_off(baseline, expected, timeout)
        cpu_after, clock_after = cpu.snapshot(), time.monotonic()
        statements_after = await cost.statement_counts(self.admin_dsn)
        sampler.phase = "collect"
        if not drained:
            self.say(f"  {name}: not every notice was handed off within {timeout:g} s of the last push")
        handoffs = await bench.sink_handoffs()
        delivered: dict[str, float] | None = None
        if with_delivered:
            times = await bench.notification_times(since)
            delivered = {nid: moments["delivered"] for nid, moments in times.items() if "delivered" in moments}
            published, matched = await stages.kafka_times(self.bootstrap)
            self.results.setdefault("stages", {})[name] = stages.breakdown(
                handoffs=handoffs,
                changes=bench.changes,
                phase=name,
                published=published,
                matched=matched,
                history=times,
            )
        if drained:
            await bench.wait_quiet(timeout=timeout)
            await bench.clear_sink()  # only when nothing is in flight: clearing cancels pending receipts
        result = PhaseResult.build(
            name=name,
            rate=rate,
            window=(start, end),
            subscribers=self.config.subscribers,
            changes=bench.changes,
            pushes=bench.pushes.get(name, PushStats()),
            handoffs=handoffs,
            delivered=delivered,
        )
        wall = max(clock_after - clock_before, 1e-9)
        result.cpu_seconds = {
            process: max(0.0, cpu_after[process] - cpu_before.get(process, 0.0)) for process in cpu_after
        }
        result.cpu_cores = {process: seconds / wall for process, seconds in result.cpu_seconds.items()}
        result.statements = cost.statements_by_service(statements_before, statements_after, DATABASE_PREFIX)
        self.phases[name] = result
        return result

    async def limits(self, kafka: LocalKafka, postgres: LocalPostgres) -> None:
        bootstrap = kafka.bootstrap
        topics = [f"{TOPIC_PREFIX}{CUSTODY_STATUS_CHANGED.name}", f"{TOPIC_PREFIX}{NOTIFICATION_REQUESTED.name}"]
        sizes = await limits.message_sizes(bootstrap, topics)
        size = round(sizes.get(topics[0], 1000.0))
        seconds = self.config.limit_seconds
        raw_kafka = await limits.kafka_round_trip(bootstrap, size, seconds)
        dsn = await asyncio.to_thread(ensure_database, postgres.dsn, "bench_raw")
        row_size = round(sizes.get(topics[1], 1000.0))
        raw_postgres = await limits.postgres_inserts(dsn, row_size, seconds)
        ours = self.results.get("throughput", {})
        changes = ours.get("accepted_changes_per_second") or 0.0
        notices = ours.get("notices_per_second") or 0.0
        basis = "the highest sustained throughput step"
        if not changes:
            # Nothing was sustained: compare what was observed at the best steady phase instead, and say so.
            steady = [p for name, p in self.phases.items() if name not in {"warmup", "burst"}]
            best = max(steady, key=lambda p: p.notices_per_second(), default=None)
            if best is not None:
                changes, notices = len(best.accepted) / best.window, best.notices_per_second()
                basis = f"observed in '{best.name}' (not sustained)"
        self.results["limits"] = {
            "message_bytes": {topic.removeprefix(TOPIC_PREFIX): round(value) for topic, value in sizes.items()},
            "kafka": raw_kafka,
            "postgres": raw_postgres,
            "ours": {"basis": basis, "changes_per_second": round(changes, 1), "notices_per_second": round(notices, 1)},
            "ours_as_fraction": {
                "changes_per_s_of_kafka_round_trip": round(changes / raw_kafka["messages_per_second"], 4),
                "notices_per_s_of_kafka_round_trip": round(notices / raw_kafka["messages_per_second"], 4),
                "notices_per_s_of_postgres_single_commits": round(
                    notices / raw_postgres["single_row_commits_per_second"], 4
                ),
                "notices_per_s_of_postgres_batched_rows": round(notices / raw_postgres["batched_rows_per_second"], 4),
            },
        }
