"""While 2,000+ custody changes flow to 300 subscribers, ``kill -9`` each service in turn at random moments and
restart it, make delivery exit right after a provider hand-off (twice, at random moments), restart the Kafka broker,
restart PostgreSQL; afterwards every expected notice reached the SMS provider exactly once. The provider sink does
not deduplicate (no more than Twilio does), so a resend of a message the provider already took would show.

The system runs on a Kafka broker and a PostgreSQL cluster of this test's own (it restarts them). Everything goes
through public APIs: the agency feed, the subscription API, matching's stats, and what the SMS sink received.
``CUSTODY_WATCH_FAULT_SEED`` replays one run's fault timing.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from devservers.driver import NO_STORM_HOLD, SystemDriver
from devservers.kafka import LocalKafka
from devservers.postgres import LocalPostgres
from devservers.stack import Stack
from shared.acls import SERVICES
from tests.e2e.faults import (
    FaultInjector,
    Feed,
    Recipient,
    artifacts_dir,
    check_exactly_once,
    fault_environment,
    notice_messages,
    notification_id_of,
    own_servers,
)

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CASES = 100
"""The feed cycles through this many cases, each with subscribers."""
HANDOFF_CRASHES = 2
SUBSCRIBERS = 3
"""Verified SMS subscribers per subscribed case."""
TARGET_CHANGES = 2_000
FEED_BATCH = 10
FEED_INTERVAL = 0.5
"""While the faults go on, ``FEED_BATCH`` changes every ``FEED_INTERVAL`` s; the rest follows right after."""
AFTER_FAULTS_BATCH = 100
DRAIN_WITHIN = 420.0
SETTLE = 5.0
"""After the last expected notice arrived, how long a duplicate gets to show up."""


@dataclass
class FaultSystem:
    stack: Stack
    kafka: LocalKafka
    postgres: LocalPostgres


@pytest.fixture
def fault_system() -> Iterator[FaultSystem]:
    logs = artifacts_dir()
    with own_servers(logs / "server-logs") as (kafka, postgres, bootstrap, admin_dsn):
        stack = Stack(ROOT, logs / "stack", topic_prefix="faults.", prefer_default_ports=False)
        stack.extra_env = fault_environment(stack, sending_lease_seconds=15.0)
        try:
            stack.start(bootstrap, admin_dsn, database_prefix="faults")
            yield FaultSystem(stack, kafka, postgres)
        finally:
            stack.stop()
            (logs / "stack" / "secrets.env").unlink(missing_ok=True)  # throw-away, but no need to keep them
            print(f"\nfault run logs: {stack.log_dir} and {logs / 'server-logs'}")


def phone(n: int) -> str:
    """The n-th fictional number (555 exchange); never printed."""
    return f"+1737555{n:04d}"


async def sink_messages(http: httpx.AsyncClient, stack: Stack) -> list[dict[str, Any]]:
    answer = await http.get(f"{stack.url('sms_sink')}/sink/messages", timeout=60)
    answer.raise_for_status()
    messages: list[dict[str, Any]] = answer.json()
    return messages


@pytest.mark.timeout(900)
async def test_every_notice_exactly_once_through_crashes_and_restarts(fault_system: FaultSystem) -> None:
    stack = fault_system.stack
    seed = int(os.environ.get("CUSTODY_WATCH_FAULT_SEED") or time.time_ns() % 1_000_000)
    rng = random.Random(seed)
    began = time.monotonic()
    async with httpx.AsyncClient(timeout=30) as http:
        driver = SystemDriver(stack, http)
        agency = f"faults-{seed}"
        api_key = await driver.create_agency(agency, **NO_STORM_HOLD)  # thousands of releases on purpose
        feed = Feed(http, stack.url("ingest"), agency, api_key, cases=CASES + 1)
        late_case = CASES  # subscribed only after the faults: proves the subscription path came back too

        # --- setup: verified subscribers, and matching knows them all ------------------------------------------
        recipients: dict[str, Recipient] = {}
        slots = asyncio.Semaphore(16)

        async def one(number: int) -> None:
            case, nth = divmod(number, SUBSCRIBERS)
            async with slots:
                victim = await driver.subscribe(agency, feed.case_id(case), sms=phone(number))
                await driver.verify(victim, "sms")
            recipients[phone(number)] = Recipient(f"case {case} subscriber {nth + 1}", case)

        await asyncio.gather(*(one(n) for n in range(CASES * SUBSCRIBERS)))
        await driver.wait_for_matching(agency, reachable_contacts=CASES * SUBSCRIBERS, within=60)
        setup_seconds = time.monotonic() - began

        # --- the feed flows while the faults happen -------------------------------------------------------------
        config = (await http.get(f"{stack.url('sms_sink')}/sink/config")).json()
        assert config["dedupe"] is False, "the fault run needs a provider as unforgiving as Twilio"
        injector = FaultInjector(
            stack,
            fault_system.kafka,
            fault_system.postgres,
            rng,
            markers=stack.run_dir,
            handoff_crashes=HANDOFF_CRASHES,
        )
        faults = asyncio.create_task(injector.run())
        feed_began = time.monotonic()
        loop = asyncio.get_running_loop()
        try:
            while not (injector.done.is_set() and len(feed.changes) >= TARGET_CHANGES):
                if faults.done() and faults.exception() is not None:
                    break
                if injector.done.is_set():
                    count = min(AFTER_FAULTS_BATCH, TARGET_CHANGES - len(feed.changes))
                    await feed.push(feed.records(count, injector.phase, cases=range(CASES)))
                    continue
                due = loop.time() + FEED_INTERVAL
                await feed.push(feed.records(FEED_BATCH, injector.phase, cases=range(CASES)))
                await asyncio.sleep(max(0.0, due - loop.time()))
        finally:
            if not faults.done():
                faults.cancel()
        await faults  # raises if a service, the broker or the database did not come back

        fed_until = time.monotonic()

        async def drain(within: float) -> float:
            """Wait until the provider holds as many notification ids as notices are expected; returns the wait."""
            subscribers_of = Counter(recipient.case for recipient in recipients.values())
            expected = sum(subscribers_of[change.case] for change in feed.accepted)
            started = time.monotonic()
            while time.monotonic() - started < within:
                messages = await sink_messages(http, stack)
                if len({notification_id_of(m) for m in notice_messages(messages, recipients)}) >= expected:
                    break
                await asyncio.sleep(1.0)
            return time.monotonic() - started

        drained_after = await drain(DRAIN_WITHIN)

        # --- after every fault: a new subscriber (the subscription path came back too) and a change for them -----
        late = phone(CASES * SUBSCRIBERS)
        victim = await driver.subscribe(agency, feed.case_id(late_case), sms=late)
        await driver.verify(victim, "sms")
        recipients[late] = Recipient("the subscriber who came after the faults", late_case)
        await driver.wait_for_matching(agency, reachable_contacts=CASES * SUBSCRIBERS + 1, within=60)
        await feed.push(feed.records(1, "after the faults (new subscriber)", cases=[late_case]))
        await drain(60.0)
        await asyncio.sleep(SETTLE)
        verdict = check_exactly_once(await sink_messages(http, stack), recipients, feed.changes)

    print(
        f"\nfault run (seed {seed}): setup {setup_seconds:.0f} s; {len(feed.changes)} changes pushed over "
        f"{fed_until - feed_began:.0f} s in {feed.stats.requests} requests ({feed.stats.failed_requests} failed and "
        f"retried: {dict(feed.stats.failures)}); {len(feed.accepted)} accepted\n"
        f"faults: "
        + "; ".join(f"{f.name} at {f.at:.0f} s (back after {f.recovered_after:.0f} s)" for f in injector.faults)
        + f"\nnotices: {verdict.expected} expected, {verdict.notification_ids} distinct ids at the provider, "
        f"drained {drained_after:.0f} s after the last push; total {time.monotonic() - began:.0f} s"
    )
    assert len(injector.faults) == len(SERVICES) + HANDOFF_CRASHES + 2, injector.faults
    assert len(feed.changes) >= TARGET_CHANGES
    assert len(feed.accepted) == len(feed.changes), "every record of the feed is a real change"
    assert verdict.ok, verdict.report()
    assert verdict.notification_ids == verdict.expected == verdict.notices, verdict.report()
