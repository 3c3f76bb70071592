"""Transient is not poison, end to end: each service's database refuses connections for a minute, and the Kafka
broker stops for a minute, while an agency pushes custody changes. Every service waits instead of giving up:
``/readyz`` says so during the outage, and afterwards every expected notice reached the SMS provider exactly once
and every dead-letter topic is empty.

The system runs on a broker and a PostgreSQL cluster of this module's own (it stops the broker). The outages are
real: ``ALTER DATABASE … ALLOW_CONNECTIONS false`` with every backend terminated (what a failover or a restart does
to a service), and the broker's process stopped. ``CUSTODY_WATCH_OUTAGE_SECONDS`` shortens them for a quick look.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from devservers.driver import NO_STORM_HOLD, SystemDriver
from devservers.kafka import LocalKafka
from devservers.stack import Stack
from shared.settings import KafkaSettings
from tests.dbutil import refuse_connections
from tests.e2e.faults import Feed, Recipient, artifacts_dir, check_exactly_once, fault_environment, own_servers
from tests.kafkautil import read_topic

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow, pytest.mark.waits]

ROOT = Path(__file__).resolve().parents[2]
OUTAGE_SECONDS = float(os.environ.get("CUSTODY_WATCH_OUTAGE_SECONDS", "60"))
CASES = 3
"""Cases of each scenario's agency, one verified SMS subscriber each."""
DELIVERED_WITHIN = 120.0
"""After the outage ends, how long the backlog may take to reach the provider."""
SETTLE = 5.0
"""After the last expected notice, how long a duplicate gets to show up."""
TOPIC_PREFIX = "outages."


@dataclass
class OutageSystem:
    stack: Stack
    kafka: LocalKafka
    admin_dsn: str
    bootstrap: str
    database_prefix: str = "outages"

    def database(self, service: str) -> str:
        return f"{self.database_prefix}_{service}"


@pytest.fixture(scope="module")
def outage_system() -> Iterator[OutageSystem]:
    logs = artifacts_dir() / "outages"
    with own_servers(logs / "server-logs") as (kafka, _, bootstrap, admin_dsn):
        stack = Stack(ROOT, logs / "stack", topic_prefix=TOPIC_PREFIX, prefer_default_ports=False)
        stack.extra_env = fault_environment(stack, sending_lease_seconds=15.0)
        try:
            stack.start(bootstrap, admin_dsn, database_prefix="outages")
            yield OutageSystem(stack, kafka, admin_dsn, bootstrap)
        finally:
            stack.stop()
            (logs / "stack" / "secrets.env").unlink(missing_ok=True)
            print(f"\noutage run logs: {stack.log_dir}")


@dataclass
class ReadinessWatch:
    """What each service's ``/readyz`` answered while the outage lasted."""

    not_ready: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    async def run(self, http: httpx.AsyncClient, stack: Stack, services: list[str]) -> None:
        while True:
            for service in services:
                try:
                    answer = await http.get(f"{stack.url(service)}/readyz", timeout=5)
                except httpx.TransportError:
                    continue
                if answer.status_code == 503:
                    self.not_ready.setdefault(service, []).append(answer.json()["checks"])
            await asyncio.sleep(1.0)

    def said_degraded(self, service: str) -> bool:
        return any(
            value.startswith(("degraded", "unavailable"))
            for checks in self.not_ready.get(service, [])
            for value in checks.values()
        )


async def dead_letters(bootstrap: str) -> dict[str, int]:
    """How many records each dead-letter topic of the system holds."""
    settings = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=TOPIC_PREFIX, client_id="outage-test")
    admin = AIOKafkaAdminClient(**settings.common_kwargs())
    await admin.start()
    try:
        topics = [topic for topic in await admin.list_topics() if topic.startswith(f"{TOPIC_PREFIX}dlq.")]
    finally:
        await admin.close()
    counts: dict[str, int] = {}
    for topic in topics:
        try:
            records = await read_topic(settings, topic, until=lambda found: len(found) > 0, timeout=3)
        except AssertionError:
            records = []
        counts[topic] = len(records)
    return counts


@dataclass
class Scenario:
    """One agency's cases, each with a verified SMS subscriber, and the changes pushed to it."""

    driver: SystemDriver
    feed: Feed
    recipients: dict[str, Recipient]

    @classmethod
    async def set_up(cls, http: httpx.AsyncClient, stack: Stack, name: str) -> Scenario:
        driver = SystemDriver(stack, http)
        agency = f"outage-{name}-{time.time_ns() % 1_000_000}"
        api_key = await driver.create_agency(agency, **NO_STORM_HOLD)
        feed = Feed(http, stack.url("ingest"), agency, api_key, cases=CASES)
        recipients: dict[str, Recipient] = {}
        base = abs(hash(agency)) % 9000
        for case in range(CASES):
            number = f"+1737556{(base + case) % 10_000:04d}"
            victim = await driver.subscribe(agency, feed.case_id(case), sms=number)
            await driver.verify(victim, "sms")
            recipients[number] = Recipient(f"{name} case {case}", case)
        await driver.wait_for_matching(agency, reachable_contacts=CASES, within=60)
        return cls(driver, feed, recipients)

    async def push_round(self, phase: str, *, give_up_after: float = 300.0) -> None:
        await self.feed.push(self.feed.records(CASES, phase), give_up_after=give_up_after)

    async def sink_messages(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        for number in self.recipients:
            messages += await self.driver.received("sms", number)
        return messages

    async def wait_exactly_once(self) -> str:
        """Wait for every accepted change's notice, then settle; the verdict's report when it is not clean."""
        deadline = time.monotonic() + DELIVERED_WITHIN
        while True:
            verdict = check_exactly_once(await self.sink_messages(), self.recipients, self.feed.changes)
            if not verdict.missing or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(SETTLE)
        verdict = check_exactly_once(await self.sink_messages(), self.recipients, self.feed.changes)
        return "" if verdict.ok else verdict.report()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


async def ride_out(
    http: httpx.AsyncClient, system: OutageSystem, scenario: Scenario, *, watched: list[str], begin: Any, end: Any
) -> ReadinessWatch:
    """Push changes before, during and after an outage that ``begin`` starts and ``end`` ends."""
    await scenario.push_round("before")
    watch = ReadinessWatch()
    watcher = asyncio.create_task(watch.run(http, system.stack, watched))
    await begin()
    started = time.monotonic()
    try:
        pushes = asyncio.gather(*(scenario.push_round(f"during {n}") for n in range(2)))
        await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - started)))
    finally:
        await end()
    try:
        await pushes
    finally:
        watcher.cancel()
    await scenario.push_round("after")
    return watch


@pytest.mark.timeout(900)
@pytest.mark.parametrize("service", ["ingest", "subscription", "matching", "delivery"])
async def test_a_database_outage_is_waited_out(
    service: str, outage_system: OutageSystem, http: httpx.AsyncClient
) -> None:
    system = outage_system
    scenario = await Scenario.set_up(http, system.stack, f"db-{service}")
    database = system.database(service)

    async def begin() -> None:
        await refuse_connections(system.admin_dsn, database, refuse=True)

    async def end() -> None:
        await refuse_connections(system.admin_dsn, database, refuse=False)

    watch = await ride_out(http, system, scenario, watched=[service], begin=begin, end=end)
    problems = await scenario.wait_exactly_once()
    assert not problems, f"after {service}'s database came back:\n{problems}"
    assert watch.said_degraded(service), f"{service}'s /readyz never said it was degraded: {watch.not_ready}"
    counts = await dead_letters(system.bootstrap)
    assert not any(counts.values()), f"dead letters after {service}'s database outage: {counts}"
    system.stack.wait_ready(service, timeout=60)


@pytest.mark.timeout(900)
async def test_a_broker_outage_is_waited_out(outage_system: OutageSystem, http: httpx.AsyncClient) -> None:
    system = outage_system
    scenario = await Scenario.set_up(http, system.stack, "broker")
    services = ["ingest", "subscription", "matching", "delivery"]

    async def begin() -> None:
        await asyncio.to_thread(system.kafka.stop)

    async def end() -> None:
        await asyncio.to_thread(system.kafka.start)

    watch = await ride_out(http, system, scenario, watched=services, begin=begin, end=end)
    problems = await scenario.wait_exactly_once()
    assert not problems, f"after the broker came back:\n{problems}"
    for service in services:
        assert watch.said_degraded(service), f"{service}'s /readyz never said the broker was away: {watch.not_ready}"
    for service in services:
        system.stack.wait_ready(service, timeout=60)
    counts = await dead_letters(system.bootstrap)
    assert not any(counts.values()), f"dead letters after a broker outage: {counts}"
