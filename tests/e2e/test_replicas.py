"""Two processes of matching, of subscription and of ingest, one of each killed mid-run: every notice reaches the
SMS provider exactly once per notification id. Only public APIs and what the SMS sink received."""

from __future__ import annotations

import asyncio
import copy
import csv
import io
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx
import pytest

from devservers.driver import NO_STORM_HOLD, DriverError, SystemDriver, Victim, custody_record
from devservers.stack import Stack
from tests.e2e.faults import notification_id_of

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

CASES = 6
ROUNDS = 4
STATUS_CODES = ("BOOKED", "RELEASED_BOND")
"""Alternating, so every round is a real change for every case."""
CSV_COLUMNS = ("record_id", "person_number", "booking_number", "case_numbers", "name", "status_code", "effective_at")


def routed(stack: Stack, routes: Mapping[str, str]) -> Stack:
    """The same stack, with each service's public URL in ``routes`` pointing at one of its processes."""
    view = copy.copy(stack)
    view.ports = stack.ports | {service: stack.ports[process] for service, process in routes.items()}
    return view


@dataclass
class Scenario:
    """One service run twice: its victims, a driver per process (the survivor first), the process to kill, and
    how many notices each victim must receive."""

    service: str
    agency: str
    key: str
    drivers: list[SystemDriver]
    replica: str
    doomed: str
    victims: list[tuple[str, Victim]] = field(default_factory=list)
    notices_expected: Counter[str] = field(default_factory=Counter)

    def driver(self, n: int) -> SystemDriver:
        return self.drivers[n % len(self.drivers)]


async def start(
    stack: Stack,
    http: httpx.AsyncClient,
    service: str,
    token: str,
    *,
    routes: Mapping[str, str] | None = None,
    kill_the_first: bool = False,
) -> Scenario:
    """A second process of ``service``; ``kill_the_first``: the one that started first (and so leads ingest's
    outbox relay) is the one that will die, else the new one. ``routes``: other services' processes to use."""
    replica = stack.start_replica(service)
    await asyncio.to_thread(stack.wait_ready, replica)
    first = SystemDriver(routed(stack, routes or {}), http)
    second = SystemDriver(routed(stack, {**(routes or {}), service: replica}), http)
    agency = f"rep-{service}-{token}"
    key = await first.create_agency(agency, **NO_STORM_HOLD)
    if kill_the_first:
        return Scenario(service, agency, key, [second, first], replica, doomed=service)
    return Scenario(service, agency, key, [first, second], replica, doomed=replica)


def kill(scenario: Scenario) -> None:
    """SIGKILL, as in a crash: the other process carries on alone."""
    scenario.drivers[0].stack.kill_service(scenario.doomed)
    scenario.drivers = scenario.drivers[:1]


async def subscribe_all(scenario: Scenario, phones: list[str], *, kill_after: int | None = None) -> None:
    """One verified SMS subscriber per case; subscribed through one process, verified through the other."""
    for n, phone in enumerate(phones):
        if n == kill_after:
            kill(scenario)
        case = f"CR-{scenario.agency}-{n}"
        victim = await scenario.driver(n).subscribe(scenario.agency, case, sms=phone)
        await scenario.driver(n + 1).verify(victim, "sms")
        scenario.victims.append((case, victim))
    await scenario.drivers[0].wait_for_matching(scenario.agency, reachable_contacts=len(phones))


def records(scenario: Scenario, round_number: int) -> list[dict[str, Any]]:
    status = STATUS_CODES[round_number % len(STATUS_CODES)]
    return [custody_record(f"{scenario.agency}-{case}-{round_number}", case, status) for case, _ in scenario.victims]


async def push_json(scenario: Scenario, driver: SystemDriver, round_number: int) -> None:
    answer = await driver.push(scenario.agency, scenario.key, records(scenario, round_number))
    results = [result["result"] for result in answer["results"]]
    assert results == ["accepted"] * len(scenario.victims), answer


async def upload_csv(scenario: Scenario, driver: SystemDriver, round_number: int) -> str:
    """Upload the round as a CSV export; returns the job's path (any ingest process answers for it)."""
    body = io.StringIO()
    writer = csv.writer(body)
    writer.writerow(CSV_COLUMNS)
    for record in records(scenario, round_number):
        writer.writerow([record[column] if column != "case_numbers" else record[column][0] for column in CSV_COLUMNS])
    uploaded = await driver.http.post(
        f"{driver.stack.url('ingest')}/v1/agencies/{scenario.agency}/custody-files",
        content=body.getvalue().encode(),
        headers={"Authorization": f"Bearer {scenario.key}", "Content-Type": "text/csv"},
    )
    assert uploaded.status_code == 202, uploaded.text
    return f"/v1/agencies/{scenario.agency}/custody-files/{uploaded.json()['job_id']}"


async def wait_for_job(scenario: Scenario, job_path: str) -> None:
    """Until the file is applied (the next round is newer, so it must not overtake this one)."""
    driver = scenario.drivers[0]
    headers = {"Authorization": f"Bearer {scenario.key}"}
    deadline = time.monotonic() + 90
    while True:
        job = (await driver.http.get(f"{driver.stack.url('ingest')}{job_path}", headers=headers)).json()
        if job["status"] == "processed":
            break
        assert job["status"] != "failed", job
        assert time.monotonic() < deadline, job
        await asyncio.sleep(0.2)
    assert job["rows_accepted"] == len(scenario.victims), job


async def push_rounds(scenario: Scenario, *, kill_after: int | None = None, alternate: bool = False) -> None:
    """Push every round; with ``alternate``, JSON and CSV in turn, each to the other process. The kill comes right
    after round ``kill_after`` is accepted, while it is being processed."""
    for round_number in range(ROUNDS):
        driver = scenario.driver(round_number) if alternate else scenario.drivers[0]
        job = None
        if alternate and round_number % 2:
            job = await upload_csv(scenario, driver, round_number)
        else:
            await push_json(scenario, driver, round_number)
        for _, victim in scenario.victims:
            scenario.notices_expected[victim.sms or ""] += 1
        if round_number == kill_after:
            kill(scenario)
        if job is not None:
            await wait_for_job(scenario, job)


def at_least(count: int, messages: list[dict[str, Any]]) -> bool:
    return len(messages) >= count


async def each_notice_once(system: SystemDriver, scenario: Scenario) -> list[str]:
    """Problems with what the SMS provider received for the scenario's victims (none when all is well)."""
    problems = []
    for phone, expected in scenario.notices_expected.items():
        # The verification code and then one notice per round.
        try:
            messages = await system.wait_for("sms", phone, partial(at_least, expected + 1), within=150)
        except DriverError as error:
            problems.append(f"{scenario.service}: {error}")
            continue
        by_id = Counter(notification_id_of(message) for message in messages)
        if any(count > 1 for count in by_id.values()) or len(by_id) != expected + 1:
            problems.append(f"{scenario.service}: {len(messages)} messages, {len(by_id)} notification ids: {by_id}")
    return problems


async def test_two_replicas_of_matching_subscription_and_ingest_each_notice_once(
    system: SystemDriver, stack: Stack
) -> None:
    token = uuid.uuid4().hex[:6]
    base = int(token, 16) % 9000
    phones = [[f"+1512555{(base + 10 * s + n) % 10000:04d}" for n in range(CASES)] for s in range(3)]
    already_running = set(stack.processes)
    try:
        # Ingest's first process dies: every scenario feeds the one that lives.
        ingest = await start(stack, system.http, "ingest", token, kill_the_first=True)
        survivor = {"ingest": ingest.replica}
        matching, subscription = await asyncio.gather(
            start(stack, system.http, "matching", token, routes=survivor),
            start(stack, system.http, "subscription", token, routes=survivor),
        )
        scenarios = (matching, subscription, ingest)

        async def run_matching() -> None:
            await subscribe_all(matching, phones[0])
            await push_rounds(matching, kill_after=1)  # killed while it matches the second round

        async def run_subscription() -> None:
            await subscribe_all(subscription, phones[1], kill_after=CASES // 2)
            await push_rounds(subscription)

        async def run_ingest() -> None:
            await subscribe_all(ingest, phones[2])
            # Killed with a CSV file uploaded to it, not yet applied, and its outbox relay leading.
            await push_rounds(ingest, kill_after=1, alternate=True)

        await asyncio.gather(run_matching(), run_subscription(), run_ingest())
        results = await asyncio.gather(*(each_notice_once(system, s) for s in scenarios))
        await asyncio.sleep(3)  # a late duplicate would arrive by now
        results += await asyncio.gather(*(each_notice_once(system, s) for s in scenarios))
        problems = [problem for result in results for problem in result]
        assert not problems, "\n".join(problems)
    finally:
        if stack.processes["ingest"].poll() is not None:
            stack.start_service("ingest")
        for replica in set(stack.processes) - already_running:
            if stack.processes[replica].poll() is None:
                stack.stop_service(replica)
        for service in ("matching", "subscription", "ingest"):
            stack.wait_ready(service)
