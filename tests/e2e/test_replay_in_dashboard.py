"""An operator replays, from the dashboard in a real browser, a release notice that delivery gave up on while the
provider was failing: the victim then gets it once, and the notice's history shows every attempt.

Everything is the running system: the SMS sink answers every send with a temporary error until delivery parks the
notice on ``dlq.delivery``; then the provider is healthy again and the admin presses Replay."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, expect

from devservers.driver import SystemDriver, custody_record
from devservers.stack import Stack
from shared.envelope import decode
from shared.settings import KafkaSettings
from shared.topics import dead_letter_topic
from tests.e2e.browser import chromium
from tests.kafkautil import read_topic

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


async def configure_sms_sink(http: httpx.AsyncClient, stack: Stack, **config: Any) -> None:
    answer = await http.post(f"{stack.url('sms_sink')}/sink/config", json=config)
    answer.raise_for_status()


async def notices_of(http: httpx.AsyncClient, stack: Stack, subscription_id: str) -> list[dict[str, Any]]:
    answer = await http.get(
        f"{stack.url('delivery')}/v1/notifications",
        params={"subscription_id": subscription_id},
        headers={"Authorization": f"Bearer {stack.secrets['OPERATOR_TOKEN']}"},
    )
    answer.raise_for_status()
    found: list[dict[str, Any]] = answer.json()["notifications"]
    return found


async def eventually(probe: Any, *, within: float = 90.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("not in time")
        await asyncio.sleep(0.5)


async def test_a_parked_release_notice_replayed_from_the_dashboard_reaches_the_victim_once(
    system: SystemDriver, stack: Stack, kafka_bootstrap: str, browser: Browser
) -> None:
    http = system.http
    token = uuid.uuid4().hex[:6]
    agency, case, number = f"replay-{token}", f"CR-{token}", f"+1737557{int(token, 16) % 10_000:04d}"
    api_key = await system.create_agency(agency)
    victim = await system.subscribe(agency, case, sms=number)
    await system.verify(victim, "sms")
    await system.wait_for_matching(agency, reachable_contacts=1)

    await configure_sms_sink(http, stack, failure_rate=1.0)
    try:
        await system.push(agency, api_key, [custody_record(f"r-{token}", case, "RELEASED")])

        async def parked() -> dict[str, Any] | None:
            notices = await notices_of(http, stack, victim.subscription_id)
            return next((n for n in notices if n["outcome"] == "failed" and n["parked_reason"]), None)

        notice = await eventually(parked, within=120)
    finally:
        await configure_sms_sink(http, stack, failure_rate=0.0)
    notification_id = notice["notification_id"]

    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=stack.topic_prefix, client_id="replay-test")
    letters = await read_topic(
        kafka,
        kafka.topic(dead_letter_topic("delivery")),
        until=lambda records: any(record.key == notification_id.encode() for record in records),
        timeout=60,
    )
    letter = next(record for record in letters if record.key == notification_id.encode())
    event_id = decode(letter.value).id
    assert await system.received("sms", number) == [
        message for message in await system.received("sms", number) if "code" in message["body"].lower()
    ], "while the provider failed, no notice reached the victim"

    page = await browser.new_page()
    await page.goto(stack.url("ops") + "/")
    await page.fill("input[name=username]", "admin")
    await page.fill("input[name=password]", stack.secrets["OPS_ADMIN_PASSWORD"])
    await page.click("button[type=submit]")
    row = page.locator(f'tr[data-event-id="{event_id}"]')
    await expect(row).to_be_visible(timeout=30_000)
    page.on("dialog", lambda dialog: dialog.accept())
    await row.locator("button.replay").click()
    await expect(page.locator("#result")).to_contain_text("Replayed", timeout=20_000)

    async def delivered() -> list[dict[str, Any]]:
        notices = [n for n in await notices_of(http, stack, victim.subscription_id) if n["status"] == "delivered"]
        return [n for n in notices if n["notification_id"] == notification_id]

    await eventually(delivered)
    await asyncio.sleep(3)  # a second send would show by now
    notices = [message for message in await system.received("sms", number) if "RELEASED" in message["body"]]
    assert len(notices) == 1, f"the replayed notice reached the victim {len(notices)} times"

    await page.goto(stack.url("ops") + f"/notifications/{notification_id}")
    history = page.locator("#history tbody tr")
    await expect(history.filter(has_text="delivered")).to_have_count(1, timeout=20_000)
    attempts = {int(text) for text in await page.locator("#history tbody tr td:nth-child(5)").all_inner_texts()}
    assert len(attempts) >= 2, f"the history shows the attempts before the replay and the replay: {attempts}"
    await page.close()
