"""Helpers of the fault-injection end-to-end test (``test_faults.py``).

- :func:`own_servers`: a Kafka broker and a PostgreSQL cluster of the test's own, because the test restarts them;
- :class:`Feed`: an agency's feed client that numbers every change and retries a failed request with the same
  ``Idempotency-Key`` and body, as a careful real client would, so it always learns the first answer;
- :class:`FaultInjector`: ``kill -9`` of each service in turn at random moments, delivery exiting right after a
  provider hand-off (before its bookkeeping) at random moments, then a Kafka and a PostgreSQL restart, noting what
  was under way when (the *phase*);
- :func:`check_exactly_once`: from what the SMS sink (the provider) holds back to the changes the feed sent.

Phone numbers are never printed: recipients are named by case and subscriber number.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import re
import shutil
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from devservers.driver import custody_record
from devservers.kafka import LocalKafka
from devservers.ports import pid_alive, repo_root
from devservers.postgres import LocalPostgres
from devservers.stack import SMS_ACCOUNT_SID, SMS_FROM_NUMBER, Stack
from shared.acls import SERVICES

log = logging.getLogger(__name__)

UNLIMITED = "1000000000"
STATUS_CYCLE = ("BOOKED", "TRANSFERRED", "RETURNED_TO_CUSTODY", "RELEASED_BOND")
"""Each case walks this cycle, so every record is a real change from the one before."""
STATUS_WORDS = {
    "BOOKED": "BOOKED INTO CUSTODY",
    "TRANSFERRED": "TRANSFERRED",
    "RETURNED_TO_CUSTODY": "BACK IN CUSTODY",
    "RELEASED_BOND": "RELEASED",
}
"""What the English SMS says for each status code."""
CHANGE_IN_BODY = re.compile(r"\bFault (\d+)\b")
"""The person's name in each record is ``Fault <change number>``, and the notice names the person."""


# --- servers ------------------------------------------------------------------------------------------------------


def _servers_dir() -> Path:
    return repo_root() / ".local" / "test-servers"


def _purge_stale() -> None:
    """Stop and delete the servers of fault runs that were killed before they could clean up."""
    for path in _servers_dir().glob("faults-*"):
        try:
            owner = int(path.name.rsplit("-", 1)[1])
        except ValueError:
            continue
        if owner == os.getpid() or pid_alive(owner):
            continue
        with contextlib.suppress(Exception):
            LocalKafka(repo_root(), "stale", data_dir=path / "kafka").kill()
        with contextlib.suppress(Exception):
            LocalPostgres(repo_root(), "stale", instance_dir=path / "postgres").kill()
        shutil.rmtree(path, ignore_errors=True)


def artifacts_dir() -> Path:
    """Where this run keeps the services' and servers' logs: ``test-artifacts/faults/run-<pid>``, which outlives
    pytest's rotating tmp dirs. Runs whose process is gone are deleted, so the newest run is what stays."""
    base = repo_root() / "test-artifacts" / "faults"
    for path in base.glob("run-*"):
        with contextlib.suppress(ValueError):
            if not pid_alive(int(path.name.rsplit("-", 1)[1])):
                shutil.rmtree(path, ignore_errors=True)
    here = base / f"run-{os.getpid()}"
    shutil.rmtree(here, ignore_errors=True)
    here.mkdir(parents=True)
    return here


@contextlib.contextmanager
def own_servers(keep_logs_in: Path) -> Iterator[tuple[LocalKafka, LocalPostgres, str, str]]:
    """A fresh broker and cluster under ``.local/test-servers/faults-<pid>`` (PostgreSQL must be able to reach its
    directory when we run as root, which a pytest tmp dir does not guarantee); yields them with their bootstrap and
    admin DSN. Both are stopped and deleted afterwards, their logs copied to ``keep_logs_in`` first."""
    _purge_stale()
    base = _servers_dir() / f"faults-{os.getpid()}"
    shutil.rmtree(base, ignore_errors=True)
    kafka = LocalKafka(repo_root(), f"faults-{os.getpid()}", data_dir=base / "kafka")
    postgres = LocalPostgres(repo_root(), f"faults-{os.getpid()}", instance_dir=base / "postgres", fast=True)
    try:
        bootstrap = kafka.start()
        admin_dsn = postgres.start()
        yield kafka, postgres, bootstrap, admin_dsn
    finally:
        with contextlib.suppress(Exception):
            kafka.stop()
        with contextlib.suppress(Exception):
            postgres.stop()
        keep_logs_in.mkdir(parents=True, exist_ok=True)
        for source in (kafka.console_log, kafka.server_log, postgres.log_file):
            with contextlib.suppress(OSError):
                shutil.copy(source, keep_logs_in / f"{source.parent.name}-{source.name}")
        shutil.rmtree(base, ignore_errors=True)


def fault_environment(stack: Stack, *, sending_lease_seconds: float) -> dict[str, str]:
    """Lift the limits that only stop abuse or pace a real provider (they would only slow the test down), and
    shorten the sending lease so an attempt stranded by ``kill -9`` is taken over within the test's time."""
    provider = {
        "name": "local-sms",
        "account_sid": SMS_ACCOUNT_SID,
        "auth_token": stack.secrets["SMS_AUTH_TOKEN"],
        "from_number": SMS_FROM_NUMBER,
        "base_url": stack.url("sms_sink"),
        "rate_per_second": 1_000_000.0,
    }
    return {
        "SUBSCRIPTION_SUBSCRIBE_LIMIT_PER_CLIENT_PER_HOUR": UNLIMITED,
        "SUBSCRIPTION_SUBSCRIBE_LIMIT_PER_CONTACT_PER_DAY": UNLIMITED,
        "SUBSCRIPTION_VERIFY_LIMIT_PER_CLIENT_PER_HOUR": UNLIMITED,
        "SUBSCRIPTION_LOOKUP_LIMIT_PER_CLIENT_PER_MINUTE": UNLIMITED,
        "SUBSCRIPTION_MANAGE_LIMIT_PER_CLIENT_PER_MINUTE": UNLIMITED,
        "DELIVERY_SMS_PROVIDERS": json.dumps([provider]),
        "DELIVERY_SENDING_LEASE_SECONDS": str(sending_lease_seconds),
    }


# --- the feed -------------------------------------------------------------------------------------------------------


@dataclass
class Change:
    number: int
    case: int
    status_code: str
    phase: str
    """What the fault injector was doing when the request carrying this change was first sent."""
    accepted: bool = False


@dataclass
class FeedStats:
    requests: int = 0
    failed_requests: int = 0
    """Requests that failed (connection refused/reset, 5xx, timeout) and were retried with the same key."""
    failures: Counter[str] = field(default_factory=Counter)


class FeedError(RuntimeError):
    """Ingest gave an answer no retry can fix, or never answered in time."""


class Feed:
    """One agency's feed: numbered changes, each case cycling through :data:`STATUS_CYCLE`."""

    def __init__(self, http: httpx.AsyncClient, ingest_url: str, agency: str, api_key: str, cases: int) -> None:
        self.http = http
        self.url = f"{ingest_url}/v1/agencies/{agency}/custody-events"
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self.token = uuid.uuid4().hex[:6]
        self.cases = cases
        self.changes: dict[int, Change] = {}
        self.stats = FeedStats()
        self._next_number = 0
        self._next_case = 0
        self._per_case = [0] * cases
        self._last_effective = datetime.now(UTC) - timedelta(seconds=1)

    def case_id(self, case: int) -> str:
        return f"CR-{self.token}-{case:04d}"

    def _effective_at(self) -> str:
        """Strictly increasing, so each record is newer than the one before it in its case."""
        self._last_effective = max(datetime.now(UTC), self._last_effective + timedelta(microseconds=1))
        return self._last_effective.isoformat()

    def records(self, count: int, phase: str, *, cases: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """The next ``count`` changes, round-robin over ``cases`` (all of them by default)."""
        chosen = list(cases) if cases is not None else list(range(self.cases))
        out: list[dict[str, Any]] = []
        for _ in range(count):
            case = chosen[self._next_case % len(chosen)]
            self._next_case += 1
            status = STATUS_CYCLE[self._per_case[case] % len(STATUS_CYCLE)]
            self._per_case[case] += 1
            number = self._next_number
            self._next_number += 1
            self.changes[number] = Change(number, case, status, phase)
            out.append(
                custody_record(
                    f"{self.token}-{number}",
                    self.case_id(case),
                    status,
                    name=f"Fault {number}",
                    transfer_destination="State Prison" if status == "TRANSFERRED" else None,
                    effective_at=self._effective_at(),
                )
            )
        return out

    async def push(self, records: list[dict[str, Any]], *, give_up_after: float = 120.0) -> None:
        """Send one batch until ingest answers it; a failure is retried with the same key and the same bytes, so a
        batch applied before its answer was lost is answered again from ingest's record, never applied twice."""
        body = json.dumps({"records": records}).encode()
        headers = self.headers | {"Idempotency-Key": f"faults-{uuid.uuid4()}"}
        deadline = time.monotonic() + give_up_after
        while True:
            self.stats.requests += 1
            try:
                answer = await self.http.post(self.url, content=body, headers=headers, timeout=30)
            except httpx.TransportError as error:
                failure = type(error).__name__
            else:
                if answer.status_code == 200:
                    self._note(answer.json())
                    return
                if answer.status_code < 500:
                    raise FeedError(f"ingest answered {answer.status_code}: {answer.text[:300]}")
                failure = f"HTTP {answer.status_code}"
            self.stats.failed_requests += 1
            self.stats.failures[failure] += 1
            if time.monotonic() > deadline:
                raise FeedError(f"ingest did not answer a batch within {give_up_after:.0f} s (last: {failure})")
            await asyncio.sleep(0.5)

    def _note(self, answer: Mapping[str, Any]) -> None:
        for outcome in answer["results"]:
            number = int(str(outcome["record_id"]).rsplit("-", 1)[1])
            # accepted with an event id: a custody.status-changed event was emitted for this change
            if outcome["result"] == "accepted" and outcome.get("event_id"):
                self.changes[number].accepted = True

    @property
    def accepted(self) -> list[Change]:
        return [change for change in self.changes.values() if change.accepted]


# --- the faults -----------------------------------------------------------------------------------------------------


@dataclass
class Fault:
    name: str
    at: float
    """Seconds since the injector started."""
    recovered_after: float
    """Seconds from the fault until everything answered ready again."""


HANDOFF_HOOK = "DELIVERY_CRASH_AFTER_HANDOFF_MARKER"


class FaultInjector:
    """``kill -9`` each service in turn at a random moment and start it again, with ``handoff_crashes`` times
    delivery exiting right after handing a message to the provider mixed in; then restart the Kafka broker; then
    restart PostgreSQL. Blocking calls run in threads, so the feed keeps flowing meanwhile."""

    def __init__(
        self,
        stack: Stack,
        kafka: LocalKafka,
        postgres: LocalPostgres,
        rng: random.Random,
        *,
        markers: Path,
        handoff_crashes: int = 2,
    ) -> None:
        self.stack = stack
        self.kafka = kafka
        self.postgres = postgres
        self.rng = rng
        self.markers = markers
        self.handoff_crashes = handoff_crashes
        self.phase = "before the faults"
        self.faults: list[Fault] = []
        self.done = asyncio.Event()
        self._started = 0.0

    async def run(self) -> None:
        self._started = time.monotonic()
        try:
            steps = [*SERVICES, *[None] * self.handoff_crashes]
            self.rng.shuffle(steps)
            for number, service in enumerate(steps):
                await self._pause()
                if service is None:
                    await self._fault("delivery exits right after a hand-off", self._crash_after_handoff(number))
                else:
                    await self._fault(f"kill -9 {service}", self._kill_and_start(service))
            await self._pause()
            await self._fault("Kafka restart", asyncio.to_thread(self.kafka.restart))
            await self._pause()
            await self._fault("PostgreSQL restart", asyncio.to_thread(self.postgres.restart))
            self.phase = "after the faults"
        finally:
            self.done.set()

    async def _pause(self) -> None:
        self.phase = "between faults"
        await asyncio.sleep(self.rng.uniform(1.0, 4.0))

    async def _kill_and_start(self, service: str) -> None:
        self.stack.kill_service(service)
        await asyncio.sleep(self.rng.uniform(0.2, 2.0))
        self.stack.start_service(service)

    async def _crash_after_handoff(self, number: int) -> None:
        """Restart delivery armed with its test hook: it exits (70) right after its next provider call returns, with
        the message at the provider and nothing recorded; then it is started again, unarmed, and takes over."""
        marker = self.markers / f"handoff-crash-{number}"
        self.stack.env[HANDOFF_HOOK] = str(marker)
        try:
            await self._kill_and_start("delivery")
            process = self.stack.processes["delivery"]
            await asyncio.to_thread(process.wait, 120)
            if not marker.exists():
                raise RuntimeError(f"delivery exited ({process.returncode}) without reaching its hand-off hook")
        finally:
            del self.stack.env[HANDOFF_HOOK]
        self.stack.start_service("delivery")

    async def _fault(self, name: str, action: Any) -> None:
        self.phase = name
        at = time.monotonic()
        log.info("fault: %s", name)
        await action
        # Every service must come back by itself (wait_ready fails at once if a process died).
        await asyncio.gather(*(asyncio.to_thread(self.stack.wait_ready, service, 120.0) for service in SERVICES))
        self.faults.append(Fault(name, round(at - self._started, 1), round(time.monotonic() - at, 1)))


# --- the verdict ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipient:
    label: str
    """e.g. ``case 7 subscriber 2`` (never the number itself)"""
    case: int


@dataclass
class Verdict:
    expected: int
    notices: int
    """Notice messages the sink holds for our recipients (verification codes excluded)."""
    notification_ids: int
    missing: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    wrong_text: list[str] = field(default_factory=list)
    missing_by_phase: Counter[str] = field(default_factory=Counter)
    duplicated_by_phase: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.duplicated or self.unexpected or self.wrong_text)

    def report(self, limit: int = 15) -> str:
        lines = [
            f"expected {self.expected} notices; the sink holds {self.notices} messages "
            f"with {self.notification_ids} distinct notification ids"
        ]
        for title, items in (
            ("missing", self.missing),
            ("duplicated", self.duplicated),
            ("unexpected", self.unexpected),
            ("wrong text", self.wrong_text),
        ):
            if items:
                lines.append(
                    f"{len(items)} {title}: " + "; ".join(items[:limit]) + (" …" if len(items) > limit else "")
                )
        if self.missing_by_phase:
            lines.append(f"missing by phase of the push: {dict(self.missing_by_phase)}")
        if self.duplicated_by_phase:
            lines.append(f"duplicated by phase of the push: {dict(self.duplicated_by_phase)}")
        return "\n".join(lines)


def notification_id_of(message: Mapping[str, Any]) -> str:
    """The attempt id delivery tags a message with (its status-callback ``ref``) is ``<notification id>.a<n>``."""
    return str(message.get("reference") or "").rpartition(".a")[0]


def notice_messages(
    messages: Sequence[Mapping[str, Any]], recipients: Mapping[str, Recipient]
) -> list[Mapping[str, Any]]:
    """The custody notices among the sink's messages (not the verification codes), to our recipients or naming one
    of our changes."""
    return [
        message
        for message in messages
        if CHANGE_IN_BODY.search(str(message.get("body") or ""))
        or (message.get("to") in recipients and "code" not in str(message.get("body") or ""))
    ]


def check_exactly_once(
    messages: Sequence[Mapping[str, Any]], recipients: Mapping[str, Recipient], changes: Mapping[int, Change]
) -> Verdict:
    """Every accepted change reached every subscriber of its case exactly once, and nothing else arrived.

    Exactly once at the provider means: one message per (recipient, change); one notification id per message (the
    sink, like Twilio, keeps every POST as a new message, so a resent attempt would show as two messages with one
    id); and as many distinct ids as expected notices.
    """
    by_case: defaultdict[int, list[str]] = defaultdict(list)
    for address, subscriber in recipients.items():
        by_case[subscriber.case].append(address)
    expected: set[tuple[str, int]] = {
        (address, change.number) for change in changes.values() if change.accepted for address in by_case[change.case]
    }
    notices = notice_messages(messages, recipients)
    got: defaultdict[tuple[str, int], list[Mapping[str, Any]]] = defaultdict(list)
    ids: Counter[str] = Counter()
    verdict = Verdict(expected=len(expected), notices=len(notices), notification_ids=0)
    for message in notices:
        address = str(message.get("to") or "")
        recipient = recipients.get(address)
        found = CHANGE_IN_BODY.search(str(message.get("body") or ""))
        ids[notification_id_of(message)] += 1
        if recipient is None:
            verdict.unexpected.append("a notice to someone who never subscribed")
            continue
        if found is None:
            verdict.unexpected.append(f"a message to {recipient.label} that names no change of the feed")
            continue
        got[(address, int(found.group(1)))].append(message)
    verdict.notification_ids = len(ids)
    for (address, number), received in sorted(got.items(), key=lambda item: item[0][1]):
        label = recipients[address].label
        change = changes.get(number)
        if (address, number) not in expected:
            verdict.unexpected.append(f"change {number} to {label} (not an accepted change of that case)")
            continue
        if change is not None and STATUS_WORDS[change.status_code] not in str(received[0].get("body")):
            verdict.wrong_text.append(f"change {number} to {label} does not say {STATUS_WORDS[change.status_code]}")
        if len(received) > 1:
            tokens = sorted(str(message.get("reference")) for message in received)
            verdict.duplicated.append(f"change {number} to {label} arrived {len(received)} times ({', '.join(tokens)})")
            verdict.duplicated_by_phase[change.phase if change else "?"] += 1
    for address, number in sorted(expected - set(got), key=lambda pair: pair[1]):
        change = changes[number]
        verdict.missing.append(
            f"change {number} ({change.status_code}, pushed {change.phase}) to {recipients[address].label}"
        )
        verdict.missing_by_phase[change.phase] += 1
    for notification_id, count in ids.items():
        if count > 1:
            verdict.duplicated.append(f"notification {notification_id} reached the provider {count} times")
    return verdict
