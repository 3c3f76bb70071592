"""Two delivery processes on one database and one consumer group: each notice reaches the SMS provider once, the
provider's configured rate holds across both (measured at the sink), and a ``kill -9`` of one loses nothing."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from devservers.driver import NO_STORM_HOLD, SystemDriver
from devservers.stack import Stack
from services.delivery.sendrate import SLOT_LIFETIME_SECONDS
from tests.delivery.harness import most_in_any_window
from tests.e2e.faults import Feed, Recipient, check_exactly_once, notice_messages, notification_id_of

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

RATE = 25.0
"""The provider's configured send rate (messages per second), for both replicas together."""
BURST = RATE
"""The bucket holds one second's worth (``SharedSendRate``'s default)."""
DELIVERY_JITTER_SECONDS = 0.25
"""Between taking a slot and the sink stamping the message: HTTP and scheduling on a busy 2-core machine."""
CASES = 40
SUBSCRIBERS = 2
CHANGES = 160
LEASE_SECONDS = 12.0
"""Longer than any provider's timeout (10 s), as delivery's settings require."""


def phone(n: int) -> str:
    """The n-th fictional number of this run (555 exchange); never printed."""
    return f"+1737556{n:04d}"


@pytest.fixture
def two_deliveries(stack: Stack) -> Iterator[str]:
    """Delivery restarted at a provider rate of :data:`RATE` with a short lease, plus a second replica; afterwards
    the replica is gone and delivery runs alone again with the session's settings."""
    original = dict(stack.env)
    providers = [provider | {"rate_per_second": RATE} for provider in json.loads(stack.env["DELIVERY_SMS_PROVIDERS"])]
    stack.env |= {
        "DELIVERY_SMS_PROVIDERS": json.dumps(providers),
        "DELIVERY_SENDING_LEASE_SECONDS": str(LEASE_SECONDS),
    }
    stack.stop_service("delivery")
    stack.start_service("delivery")
    replica = stack.start_replica("delivery")
    try:
        stack.wait_ready("delivery")
        stack.wait_ready(replica)
        yield replica
    finally:
        if stack.processes[replica].poll() is None:
            stack.stop_service(replica)
        stack.env = original
        stack.stop_service("delivery")
        stack.start_service("delivery")
        stack.wait_ready("delivery")


async def sink_messages(http: httpx.AsyncClient, stack: Stack) -> list[dict[str, Any]]:
    answer = await http.get(f"{stack.url('sms_sink')}/sink/messages", timeout=60)
    answer.raise_for_status()
    messages: list[dict[str, Any]] = answer.json()
    return messages


@pytest.mark.timeout(300)
async def test_two_replicas_send_each_notice_once_at_the_providers_rate_and_survive_a_kill(
    stack: Stack, system: SystemDriver, two_deliveries: str
) -> None:
    http = system.http
    began = datetime.now(UTC)
    agency = f"replicas-{uuid.uuid4().hex[:6]}"
    api_key = await system.create_agency(agency, **NO_STORM_HOLD)
    feed = Feed(http, stack.url("ingest"), agency, api_key, cases=CASES)
    recipients: dict[str, Recipient] = {}
    slots = asyncio.Semaphore(8)

    async def subscribe(number: int) -> None:
        case, nth = divmod(number, SUBSCRIBERS)
        async with slots:
            victim = await system.subscribe(agency, feed.case_id(case), sms=phone(number))
            await system.verify(victim, "sms")
        recipients[phone(number)] = Recipient(f"case {case} subscriber {nth + 1}", case)

    await asyncio.gather(*(subscribe(n) for n in range(CASES * SUBSCRIBERS)))
    await system.wait_for_matching(agency, reachable_contacts=CASES * SUBSCRIBERS, within=60)

    for _ in range(CHANGES // CASES):
        await feed.push(feed.records(CASES, "pushed"))
    expected = len(feed.accepted) * SUBSCRIBERS

    async def notices_arrived() -> int:
        return len({notification_id_of(m) for m in notice_messages(await sink_messages(http, stack), recipients)})

    deadline = time.monotonic() + 120
    while await notices_arrived() < expected // 3:
        assert time.monotonic() < deadline, "notices did not start flowing"
        await asyncio.sleep(0.2)
    stack.kill_service(two_deliveries)  # SIGKILL mid-run: its attempts in flight are taken over after the lease
    killed_at = await notices_arrived()

    while await notices_arrived() < expected:
        assert time.monotonic() < deadline, f"{await notices_arrived()} of {expected} notices after the kill"
        await asyncio.sleep(0.5)
    await asyncio.sleep(LEASE_SECONDS + 2)  # a stranded attempt sent twice would show up by now
    messages = await sink_messages(http, stack)

    verdict = check_exactly_once(messages, recipients, feed.changes)
    assert verdict.ok, verdict.report()
    assert verdict.notification_ids == verdict.expected == expected
    assert 0 < killed_at < expected

    moments = [
        datetime.fromisoformat(m["received_at"]).timestamp()
        for m in messages
        if datetime.fromisoformat(m["received_at"]) >= began
    ]
    observed = {window: most_in_any_window(moments, window) for window in (1.0, 2.0, 5.0)}
    print(f"\nreplicas: {len(moments)} messages at the sink; most in any window (s → messages): {observed}")
    for window, most in observed.items():
        allowed = BURST + RATE * (window + SLOT_LIFETIME_SECONDS + DELIVERY_JITTER_SECONDS)
        assert most <= allowed, f"{most} messages within {window} s; the provider allows {allowed:.0f}"
