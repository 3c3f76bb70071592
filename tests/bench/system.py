"""The system under test: its own Kafka and PostgreSQL, the sinks and the services, and how the load reaches it.

Everything goes through public APIs: the agency feed, the subscription API, the SMS sink's listing and the
delivery service's operator history and ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
import shutil
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
from prometheus_client.parser import text_string_to_metric_families

from devservers.driver import CODE, NO_STORM_HOLD, DriverError, SystemDriver, Victim, custody_record
from devservers.kafka import LocalKafka
from devservers.ports import repo_root
from devservers.postgres import LocalPostgres
from devservers.stack import SMS_ACCOUNT_SID, SMS_FROM_NUMBER, Stack
from shared.logging import redact
from tests.bench.config import BenchConfig

log = logging.getLogger(__name__)

T = TypeVar("T")
UNLIMITED = "1000000000"
AREA_CODES = ("512", "737", "214", "469", "972", "713", "281", "832", "210", "726")
TOPIC_PREFIX = "bench."
DATABASE_PREFIX = "bench"
CHANGE_IN_BODY = re.compile(r"\bBench (\d+)\b")


def bench_environment(stack: Stack, config: BenchConfig) -> dict[str, str]:
    """Settings that exist only to stop abuse or to pace a real provider, lifted so they do not cap the measurement.

    Everything else (batch sizes, pools, intervals, logging) stays at the services' defaults.
    """
    provider = {
        "name": "local-sms",
        "account_sid": SMS_ACCOUNT_SID,
        "auth_token": stack.secrets["SMS_AUTH_TOKEN"],
        "from_number": SMS_FROM_NUMBER,
        "base_url": stack.url("sms_sink"),
        "rate_per_second": 1_000_000.0,  # a real account's send rate is the provider's limit, not ours
    }
    return {
        "SUBSCRIPTION_SUBSCRIBE_LIMIT_PER_CLIENT_PER_HOUR": UNLIMITED,
        "SUBSCRIPTION_SUBSCRIBE_LIMIT_PER_CONTACT_PER_DAY": UNLIMITED,
        "SUBSCRIPTION_VERIFY_LIMIT_PER_CLIENT_PER_HOUR": UNLIMITED,
        "SUBSCRIPTION_LOOKUP_LIMIT_PER_CLIENT_PER_MINUTE": UNLIMITED,
        "SUBSCRIPTION_MANAGE_LIMIT_PER_CLIENT_PER_MINUTE": UNLIMITED,
        "DELIVERY_SMS_PROVIDERS": json.dumps([provider]),
        "INGEST_MAX_RECORDS_PER_BATCH": str(max(10_000, config.burst)),
    } | dict(config.env)


@contextlib.contextmanager
def running_system(config: BenchConfig) -> Iterator[tuple[Stack, LocalKafka, LocalPostgres]]:
    """Fresh Kafka, PostgreSQL and stack under ``config.work_dir``; everything stopped afterwards."""
    root = repo_root()
    work = config.work_dir
    kafka_dir, postgres_dir, stack_dir = work / "kafka", work / "postgres", work / "stack"
    # A run that was killed may have left its servers behind: stop them, then start from empty.
    LocalKafka(root, "bench", data_dir=kafka_dir).stop()
    LocalPostgres(root, "bench", instance_dir=postgres_dir).stop()
    for path in (kafka_dir, postgres_dir, stack_dir):
        shutil.rmtree(path, ignore_errors=True)
    kafka = LocalKafka(root, "bench", data_dir=kafka_dir)
    postgres = LocalPostgres(
        root,
        "bench",
        instance_dir=postgres_dir,
        fast=config.fast_postgres,
        settings={"shared_preload_libraries": "'pg_stat_statements'", "pg_stat_statements.track": "all"},
    )
    stack = Stack(root, stack_dir, topic_prefix=TOPIC_PREFIX, prefer_default_ports=False)
    stack.extra_env = bench_environment(stack, config)
    try:
        bootstrap = kafka.start()
        admin_dsn = postgres.start()
        stack.start(bootstrap, admin_dsn, database_prefix=DATABASE_PREFIX)
        yield stack, kafka, postgres
    finally:
        stack.stop()
        kafka.stop()
        postgres.stop()


def phone(n: int) -> str:
    """The n-th fictional number (555 exchange); never printed."""
    return f"+1{AREA_CODES[n // 10_000]}555{n % 10_000:04d}"


async def retrying(call: Callable[[], Awaitable[T]], attempts: int = 3) -> T:
    """``call()``, again after a transport error (a keep-alive connection the server had just closed)."""
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except httpx.TransportError:
            if attempt == attempts:
                raise
            await asyncio.sleep(0.5 * attempt)
    raise AssertionError("unreachable")


@dataclass
class Accepted:
    phase: str
    at: float
    """When the feed request that carried the change returned (Unix time)."""


@dataclass(frozen=True)
class Handoff:
    change: int
    notification_id: str
    at: float
    """When the provider (the SMS sink) received it (Unix time)."""


@dataclass
class PushStats:
    requests: int = 0
    records: int = 0
    accepted: int = 0
    other: int = 0
    failed_requests: int = 0
    request_seconds: list[float] = field(default_factory=list)


class Bench:
    """One agency, its subscribed cases, and a feed that cycles every case between booked and released."""

    def __init__(self, stack: Stack, client: httpx.AsyncClient, config: BenchConfig, token: str) -> None:
        self.stack = stack
        self.http = client
        self.driver = SystemDriver(stack, client)
        self.config = config
        self.token = token
        self.agency = f"bench-{token}"
        self.api_key = ""
        self.cases = [f"CR-{token}-{i:05d}" for i in range(config.cases)]
        self.changes: dict[int, Accepted] = {}
        """change number (in the record id and the person's name, so in the SMS) → when and where accepted"""
        self.pushes: dict[str, PushStats] = {}
        self._record_numbers = itertools.count()
        self._turn = 0
        self._per_case = [0] * len(self.cases)
        self._last_effective = datetime.now(UTC)
        self.quiet = True

    # --- setup ------------------------------------------------------------------------------------------------

    async def populate(self) -> float:
        """Create the agency and the verified subscribers; returns the seconds it took.

        Subscribe everyone, read every code from one listing of the SMS sink (thousands of victims each polling
        the sink would load it more than the system), then enter each code, as the victim would."""
        started = time.monotonic()
        # Every phase releases and re-books the same people far faster than any real feed: without opting out, the
        # storm guard would (rightly) hold it all for a person to confirm, and nothing would be measured.
        self.api_key = await self.driver.create_agency(self.agency, **NO_STORM_HOLD)
        slots = asyncio.Semaphore(self.config.setup_concurrency)
        subscribers = self.config.subscribers

        async def subscribe(number: int) -> Victim:
            async with slots:
                return await retrying(
                    lambda: self.driver.subscribe(self.agency, self.cases[number // subscribers], sms=phone(number))
                )

        victims = await asyncio.gather(*(subscribe(n) for n in range(len(self.cases) * subscribers)))
        codes = await self.codes({victim.sms for victim in victims if victim.sms})

        async def verify(victim: Victim) -> None:
            async with slots:
                await retrying(lambda: self.verify(victim, codes[victim.sms or ""]))

        await asyncio.gather(*(verify(victim) for victim in victims))
        return time.monotonic() - started

    async def codes(self, numbers: set[str], timeout: float = 600.0) -> dict[str, str]:
        """number → the verification code the SMS sink received for it."""
        deadline = time.monotonic() + timeout
        while True:
            answer = await self.http.get(f"{self.stack.url('sms_sink')}/sink/messages", timeout=120)
            answer.raise_for_status()
            found: dict[str, str] = {}
            for message in answer.json():
                code = CODE.search(message.get("body") or "")
                if message.get("to") in numbers and code:
                    found[message["to"]] = code.group(1)
            if len(found) == len(numbers):
                return found
            if time.monotonic() > deadline:
                raise DriverError(f"only {len(found)} of {len(numbers)} verification codes arrived")
            await asyncio.sleep(1.0)

    async def verify(self, victim: Victim, code: str) -> None:
        answer = await self.http.post(
            f"{self.stack.url('subscription')}/v1/subscriptions/{victim.subscription_id}/verify",
            json={"channel": "sms", "code": code},
            headers={"Authorization": f"Bearer {victim.manage_token}"},
        )
        if answer.status_code != 200:
            raise DriverError(f"verifying: {answer.status_code} {redact(answer.text[:300])}")

    # --- the feed ---------------------------------------------------------------------------------------------

    def _effective_at(self) -> str:
        """Strictly increasing, so two records of one case in one batch are never the same instant."""
        self._last_effective = max(datetime.now(UTC), self._last_effective + timedelta(microseconds=1))
        return self._last_effective.isoformat()

    def records(self, count: int) -> list[dict[str, Any]]:
        """The next ``count`` changes, round-robin over the cases; each case alternates booked / released."""
        out: list[dict[str, Any]] = []
        for _ in range(count):
            index = self._turn % len(self.cases)
            self._turn += 1
            status = "BOOKED" if self._per_case[index] % 2 == 0 else "RELEASED_BOND"
            self._per_case[index] += 1
            number = next(self._record_numbers)
            out.append(
                custody_record(
                    f"{self.token}-{number}",
                    self.cases[index],
                    status,
                    name=f"Bench {number}",  # the notice names the person: this ties each SMS to its change
                    effective_at=self._effective_at(),
                )
            )
        return out

    async def push(self, records: list[dict[str, Any]], phase: str) -> int:
        """One feed request; returns how many records were accepted as custody changes."""
        stats = self.pushes.setdefault(phase, PushStats())
        stats.requests += 1
        stats.records += len(records)
        started = time.time()
        try:
            result = await self.driver.push(self.agency, self.api_key, records)
        except (DriverError, httpx.HTTPError) as error:
            stats.failed_requests += 1
            log.warning("a feed request failed: %s", str(error)[:200])
            return 0
        at = time.time()
        stats.request_seconds.append(at - started)
        accepted = 0
        for outcome in result["results"]:
            if outcome["result"] == "accepted" and outcome.get("record_id"):
                self.changes[int(outcome["record_id"].rsplit("-", 1)[1])] = Accepted(phase, at)
                accepted += 1
            else:
                stats.other += 1
        stats.accepted += accepted
        return accepted

    async def steady(self, phase: str, rate: float, duration: float) -> tuple[float, float]:
        """Push ``rate`` changes/s for ``duration`` s as one batch per ``push_interval``; returns (start, end)."""
        interval = self.config.push_interval
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(self.config.max_in_flight)
        tasks: set[asyncio.Task[int]] = set()
        begin = loop.time()
        start = time.time()
        tick = 0
        while (due := begin + tick * interval) < begin + duration:
            await asyncio.sleep(max(0.0, due - loop.time()))
            count = round(rate * (tick + 1) * interval) - round(rate * tick * interval)
            tick += 1
            if count == 0:
                continue
            await slots.acquire()  # the system is behind: the offered rate drops, and the report shows it
            task = asyncio.create_task(self.push(self.records(count), phase))
            task.add_done_callback(lambda _: slots.release())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
        return start, time.time()

    # --- what came out ----------------------------------------------------------------------------------------

    async def delivery_counts(self) -> tuple[float, float]:
        """SMS status changes the delivery service counted: (handed off, delivered)."""
        answer = await self.http.get(f"{self.stack.url('delivery')}/metrics")
        answer.raise_for_status()
        sent = delivered = 0.0
        for family in text_string_to_metric_families(answer.text):
            if family.name != "cw_delivery_notifications":
                continue
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels.get("channel") == "sms":
                    if sample.labels.get("status") == "sent":
                        sent += sample.value
                    elif sample.labels.get("status") == "delivered":
                        delivered += sample.value
        return sent, delivered

    async def wait_quiet(self, settle: float = 2.0, timeout: float = 120.0) -> tuple[float, float]:
        """Until the delivery counters stop moving (nothing left in flight); returns them. ``self.quiet`` says
        whether they did stop within ``timeout``."""
        self.quiet = False
        deadline = time.monotonic() + timeout
        last = await self.delivery_counts()
        still_since = time.monotonic()
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            now = await self.delivery_counts()
            if now != last:
                last, still_since = now, time.monotonic()
            elif time.monotonic() - still_since >= settle:
                self.quiet = True
                return now
        return last

    async def wait_handed_off(self, baseline: tuple[float, float], expected: int, timeout: float) -> bool:
        """Until ``expected`` more SMS were handed off and delivered than at ``baseline``, or ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sent, delivered = await self.delivery_counts()
            if sent - baseline[0] >= expected and delivered - baseline[1] >= expected:
                return True
            await asyncio.sleep(0.5)
        return False

    async def history(self, since: datetime) -> list[dict[str, Any]]:
        """Every notification of the agency created since ``since``, through the operators' history API."""
        url = f"{self.stack.url('delivery')}/v1/notifications"
        headers = {"Authorization": f"Bearer {self.stack.secrets['OPERATOR_TOKEN']}"}
        seen: dict[str, dict[str, Any]] = {}
        until: str | None = None
        page_size = 500
        while True:
            params = {"agency_id": self.agency, "since": since.isoformat(), "limit": str(page_size)}
            if until is not None:
                params["until"] = until
            answer = await self.http.get(url, params=params, headers=headers, timeout=120)
            answer.raise_for_status()
            page: list[dict[str, Any]] = answer.json()["notifications"]
            fresh = [item for item in page if item["notification_id"] not in seen]
            seen.update((item["notification_id"], item) for item in page)
            if len(page) < page_size:
                return list(seen.values())
            oldest = min(datetime.fromisoformat(item["created_at"]) for item in page)
            # Newest first: step back to the oldest instant seen, including it (ties), unless that made no progress.
            step = timedelta(microseconds=1) if fresh else timedelta(0)
            until = (oldest + step).isoformat()

    async def notification_times(self, since: datetime) -> dict[str, dict[str, float]]:
        """notification id → when delivery stored it ('stored'), its first attempt was claimed ('claimed') and,
        if so, that attempt's 'delivered' receipt was recorded ('delivered'), as Unix times."""
        times: dict[str, dict[str, float]] = {}
        for notification in await self.history(since):
            entry = {"stored": datetime.fromisoformat(notification["created_at"]).timestamp()}
            first = min(notification["attempts"], key=lambda attempt: attempt["number"], default=None)
            if first:
                entry["claimed"] = datetime.fromisoformat(first["created_at"]).timestamp()
                if first["status"] == "delivered" and first["completed_at"]:
                    entry["delivered"] = datetime.fromisoformat(first["completed_at"]).timestamp()
            times[notification["notification_id"]] = entry
        return times

    async def sink_handoffs(self) -> list[Handoff]:
        """Every notice of a change the SMS sink (the provider) received: its first attempt only."""
        answer = await self.http.get(f"{self.stack.url('sms_sink')}/sink/messages", timeout=300)
        answer.raise_for_status()
        found: list[Handoff] = []
        for message in answer.json():
            notification_id, _, attempt = (message.get("reference") or "").rpartition(".a")
            change = CHANGE_IN_BODY.search(message.get("body") or "")
            if notification_id and attempt == "1" and change:
                at = datetime.fromisoformat(message["received_at"]).timestamp()
                found.append(Handoff(int(change.group(1)), notification_id, at))
        return found

    async def clear_sink(self) -> None:
        (await self.http.delete(f"{self.stack.url('sms_sink')}/sink/messages")).raise_for_status()

    async def configure_sink(self) -> None:
        answer = await self.http.post(
            f"{self.stack.url('sms_sink')}/sink/config", json={"callback_delay_seconds": self.config.callback_delay}
        )
        answer.raise_for_status()
