"""Safety guards through the running system's public APIs: a storm of releases is held (and another agency's release
is not), released exactly once or discarded; an operator's override notifies once; a silent feed is flagged in its
configured time and its subscribers are told the status cannot be confirmed."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from devservers.driver import SystemDriver, Victim, custody_record

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

QUIET_PERIOD = 3.0
"""Seconds to wait for anything that should not come (a held, duplicate or second notice) to show up."""


def phone(area: int, n: int) -> str:
    return f"+1{area}555{n % 10_000:04d}"


async def subscribed(system: SystemDriver, agency: str, cases: list[str], phones: list[str]) -> list[Victim]:
    victims = []
    for case, number in zip(cases, phones, strict=True):
        victim = await system.subscribe(agency, case, sms=number)
        await system.verify(victim, "sms")
        victims.append(victim)
    await system.wait_for_matching(agency, reachable_contacts=len(victims))
    return victims


def bodies(messages: list[dict[str, Any]]) -> list[str]:
    return [str(message["body"]) for message in messages]


async def released_count(system: SystemDriver, number: str) -> int:
    return sum("RELEASED" in body for body in bodies(await system.received("sms", number)))


@asynccontextmanager
async def ops_admin(system: SystemDriver) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """The ops dashboard, logged in as the admin: its client and CSRF token."""
    async with httpx.AsyncClient(base_url=system.stack.url("ops"), timeout=90, follow_redirects=True) as ops:
        page = await ops.post(
            "/login", data={"username": "admin", "password": system.stack.secrets["OPS_ADMIN_PASSWORD"], "next": "/"}
        )
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert csrf is not None, page.status_code
        yield ops, csrf.group(1)


async def shown_on_dashboard(ops: httpx.AsyncClient, agency: str) -> dict[str, Any]:
    """The agency's held storm, as the ops dashboard shows it (it polls ingest)."""
    deadline = time.monotonic() + 30
    while True:
        holding = (await ops.get("/api/storm-holds", params={"state": "holding"})).json()
        shown = [hold for hold in holding if hold["agency_id"] == agency]
        if shown:
            return dict(shown[0])
        assert time.monotonic() < deadline, "the held storm never reached the dashboard"
        await asyncio.sleep(0.5)


async def holds_of(system: SystemDriver, agency: str, state: str = "holding") -> list[dict[str, Any]]:
    answer = await system.admin("GET", "/storm-holds", params={"state": state})
    assert answer.status_code == 200, answer.text
    return [hold for hold in answer.json() if hold["agency_id"] == agency]


async def test_a_storm_is_held_while_another_agency_flows_and_its_release_notifies_each_once(
    system: SystemDriver,
) -> None:
    token = uuid.uuid4().hex[:6]
    stormy, calm = f"storm-{token}", f"calm-{token}"
    storm_key = await system.create_agency(stormy)
    calm_key = await system.create_agency(calm)
    population = 1_100
    cases = [f"ST-{token}-{n:04d}" for n in range(population)]
    booked = await system.push(stormy, storm_key, [custody_record(f"book-{case}", case, "BOOKED") for case in cases])
    assert booked["summary"]["accepted"] == population

    base = int(token, 16)
    watched = cases[0:1_000:100]  # ten of the thousand the storm will falsely release
    victims = await subscribed(system, stormy, watched, [phone(737, base + n) for n in range(len(watched))])
    calm_case = f"CALM-{token}"
    [calm_victim] = await subscribed(system, calm, [calm_case], [phone(737, base + 50)])
    for victim in victims:  # the code, then the current status (booked)
        await system.wait_for("sms", victim.sms or "", lambda m: len(m) >= 2)

    storm = [custody_record(f"out-{case}", case, "RELEASED_BOND") for case in cases[:1_000]]
    answer = await system.push(stormy, storm_key, storm)
    assert answer["summary"]["accepted"] == 1_000
    assert all("storm hold" in (result["reason"] or "") for result in answer["results"])

    # Another agency's single release goes out meanwhile; none of the storm's does.
    await system.push(calm, calm_key, [custody_record(f"out-{calm_case}", calm_case, "RELEASED_BOND")])
    await system.wait_for("sms", calm_victim.sms or "", lambda m: any("RELEASED" in b for b in bodies(m)))
    assert await holds_of(system, calm) == []
    await asyncio.sleep(QUIET_PERIOD)
    for victim in victims:
        assert await released_count(system, victim.sms or "") == 0

    [hold] = await holds_of(system, stormy)
    assert hold["held_changes"] == 1_000
    assert hold["urgent_changes"] == 1_000
    assert hold["by_status"] == {"released": 1_000}
    assert [sample["agency_record_id"] for sample in hold["samples"]] == [r["record_id"] for r in storm[:10]]
    assert "1,000 urgent changes" in hold["trigger"]

    async with ops_admin(system) as (ops, csrf):  # an admin releases it on the dashboard
        assert (await shown_on_dashboard(ops, stormy))["held_changes"] == 1_000
        released = await ops.post(f"/actions/storm-holds/{hold['hold_id']}/release", data={"csrf_token": csrf})
        assert released.status_code == 200, released.text
        again = await ops.post(f"/actions/storm-holds/{hold['hold_id']}/release", data={"csrf_token": csrf})
        assert again.status_code == 409
    [decided] = await holds_of(system, stormy, "released")
    assert decided["decided_by"] == "admin"

    for victim in victims:
        await system.wait_for("sms", victim.sms or "", lambda m: any("RELEASED" in b for b in bodies(m)), within=120)
    await asyncio.sleep(QUIET_PERIOD)
    tokens: Counter[str] = Counter()
    for victim in victims:
        messages = await system.received("sms", victim.sms or "")
        assert await released_count(system, victim.sms or "") == 1, bodies(messages)
        tokens.update(str(m["reference"]).split(".")[0] for m in messages)
    assert all(count == 1 for count in tokens.values()), "a notification id was sent twice"


async def test_a_discarded_storm_notifies_nobody_and_the_corrected_feed_flows_as_normal(system: SystemDriver) -> None:
    token = uuid.uuid4().hex[:6]
    agency = f"discard-{token}"
    key = await system.create_agency(agency)
    cases = [f"DS-{token}-{n:03d}" for n in range(60)]
    await system.push(agency, key, [custody_record(f"book-{case}", case, "BOOKED") for case in cases])
    base = int(token, 16)
    first, second = await subscribed(system, agency, cases[:2], [phone(726, base), phone(726, base + 1)])
    for victim in (first, second):
        await system.wait_for("sms", victim.sms or "", lambda m: len(m) >= 2)

    storm = await system.push(agency, key, [custody_record(f"bad-{case}", case, "RELEASED_OR") for case in cases])
    assert storm["summary"]["accepted"] == 60  # more than the floor of 50 urgent changes in 10 minutes
    [hold] = await holds_of(system, agency)
    refused = await system.admin("POST", f"/storm-holds/{hold['hold_id']}/discard", json={"operator": "e2e-admin"})
    assert refused.status_code == 422  # a discard needs a reason
    reason = "maintenance update mis-coded every booking as a release"
    async with ops_admin(system) as (ops, csrf):
        await shown_on_dashboard(ops, agency)
        discard = f"/actions/storm-holds/{hold['hold_id']}/discard"
        discarded = await ops.post(discard, data={"csrf_token": csrf, "reason": reason})
        assert discarded.status_code == 200, discarded.text
    [decided] = await holds_of(system, agency, "discarded")
    assert (decided["decided_by"], decided["decision_reason"]) == ("admin", reason)

    # The agency's corrected feed agrees with the restored state: nothing to say.
    corrected = await system.push(agency, key, [custody_record(f"fix-{case}", case, "BOOKED") for case in cases])
    assert corrected["summary"]["duplicate"] == 60, corrected["summary"]
    # Then a real release flows as normal, not held.
    real = await system.push(agency, key, [custody_record(f"real-{cases[0]}", cases[0], "RELEASED_BOND")])
    assert real["results"][0]["reason"] is None
    await system.wait_for("sms", first.sms or "", lambda m: any("RELEASED" in b for b in bodies(m)))
    await asyncio.sleep(QUIET_PERIOD)
    assert await released_count(system, first.sms or "") == 1
    assert await released_count(system, second.sms or "") == 0
    assert await holds_of(system, agency) == []


async def test_an_override_notifies_and_the_agreeing_feed_record_does_not(system: SystemDriver) -> None:
    token = uuid.uuid4().hex[:6]
    agency = f"override-{token}"
    key = await system.create_agency(agency)
    case = f"OV-{token}"
    await system.push(agency, key, [custody_record(f"book-{case}", case, "BOOKED")])
    [victim] = await subscribed(system, agency, [case], [phone(830, int(token, 16))])
    await system.wait_for("sms", victim.sms or "", lambda m: len(m) >= 2)

    override = {
        "case_numbers": [case],
        "status": "released",
        "effective_at": datetime.now(UTC).isoformat(),
        "operator": "duty-officer",
        "reason": "jail feed down; release confirmed by phone with the jail",
    }
    answer = await system.admin("POST", f"/agencies/{agency}/overrides", json=override)
    assert answer.status_code == 201, answer.text
    assert answer.json()["result"] == "accepted"
    await system.wait_for("sms", victim.sms or "", lambda m: any("RELEASED" in b for b in bodies(m)))

    feed = await system.push(agency, key, [custody_record(f"out-{case}", case, "RELEASED_BOND")])
    assert feed["results"][0]["result"] == "duplicate"
    assert "override" in feed["results"][0]["reason"]
    await asyncio.sleep(QUIET_PERIOD)
    assert await released_count(system, victim.sms or "") == 1

    listed = await system.admin("GET", f"/agencies/{agency}/overrides")
    assert [(o["operator"], o["reason"], o["result"]) for o in listed.json()] == [
        ("duty-officer", override["reason"], "accepted")
    ]
    future = {**override, "effective_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}
    assert (await system.admin("POST", f"/agencies/{agency}/overrides", json=future)).status_code == 422
    unknown = await system.admin("POST", f"/agencies/no-such-{token}/overrides", json=override)
    assert unknown.status_code == 404


async def test_a_silent_feed_is_flagged_in_its_configured_time_and_its_subscribers_are_told(
    system: SystemDriver,
) -> None:
    token = uuid.uuid4().hex[:6]
    agency = f"silent-{token}"
    key = await system.create_agency(agency, expected_feed_interval_minutes=1, silence_notice_after_minutes=1)
    case = f"SI-{token}"
    await system.push(agency, key, [custody_record(f"book-{case}", case, "BOOKED")])
    last_feed = time.monotonic()
    [victim] = await subscribed(system, agency, [case], [phone(361, int(token, 16))])
    await system.wait_for("sms", victim.sms or "", lambda m: len(m) >= 2)

    async def stale() -> bool:
        answer = await system.admin("GET", "/feed-health")
        return any(feed["agency_id"] == agency and feed["stale"] for feed in answer.json())

    while not await stale():
        assert time.monotonic() - last_feed < 100, "the silent feed was not flagged"
        await asyncio.sleep(1)
    flagged_after = time.monotonic() - last_feed
    assert flagged_after >= 55, f"flagged after {flagged_after:.0f} s, before the configured minute"
    flag = f'cw_ingest_feed_stale{{agency="{agency}"}} 1.0'
    while flag not in (await system.http.get(f"{system.stack.url('ingest')}/metrics")).text:
        assert time.monotonic() - last_feed < 100, "the feed-stale metric was not raised"
        await asyncio.sleep(1)

    told = await system.wait_for("sms", victim.sms or "", lambda m: any("CANNOT CONFIRM" in b for b in bodies(m)))
    assert "Do not assume" in bodies(told)[-1]
    await system.push(agency, key, [custody_record(f"again-{case}", case, "BOOKED")])
    await system.wait_for("sms", victim.sms or "", lambda m: any("arriving again" in b for b in bodies(m)))
    await asyncio.sleep(QUIET_PERIOD)
    messages = bodies(await system.received("sms", victim.sms or ""))
    assert sum("CANNOT CONFIRM" in b for b in messages) == 1
    assert sum("arriving again" in b for b in messages) == 1


NIEM_SAMPLES = Path(__file__).resolve().parents[1] / "ingest" / "niem"


async def test_niem_exchanges_notify_like_any_feed_and_hostile_xml_is_refused(system: SystemDriver) -> None:
    token = uuid.uuid4().hex[:6]
    agency = f"niem-{token}"
    key = await system.create_agency(agency)
    [victim] = await subscribed(system, agency, ["CR-2026-004512"], [phone(432, int(token, 16))])
    url = f"{system.stack.url('ingest')}/v1/agencies/{agency}/custody-events/niem"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/xml"}

    async def push(name: str) -> httpx.Response:
        return await system.http.post(url, content=(NIEM_SAMPLES / name).read_bytes(), headers=headers)

    booked = await push("booking_report.xml")
    assert booked.status_code == 200, booked.text
    assert booked.json()["summary"]["accepted"] >= 1
    await system.wait_for("sms", victim.sms or "", lambda m: any("BOOKED" in b for b in bodies(m)))
    released = await push("custody_release_report.xml")
    assert released.status_code == 200, released.text
    await system.wait_for("sms", victim.sms or "", lambda m: any("RELEASED" in b for b in bodies(m)))

    for hostile in ("hostile_billion_laughs.xml", "hostile_external_entity.xml", "unknown_namespace.xml"):
        refused = await push(hostile)
        assert refused.status_code in (400, 422), (hostile, refused.status_code)
        assert refused.json()["detail"]
    await asyncio.sleep(QUIET_PERIOD)
    assert await released_count(system, victim.sms or "") == 1


def night_zone() -> str:
    """A fixed-offset time zone where it is about 1 a.m. now: an informational notice waits there for the morning."""
    offset = (1 - datetime.now(UTC).hour) % 24
    offset = offset - 24 if offset > 14 else offset
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"  # POSIX signs


async def test_an_admin_blocks_a_pending_notice_on_the_dashboard(system: SystemDriver) -> None:
    token = uuid.uuid4().hex[:6]
    agency = f"block-{token}"
    key = await system.create_agency(agency)
    case = f"BL-{token}"
    number = phone(915, int(token, 16))
    victim = await system.subscribe(agency, case, sms=number, timezone=night_zone(), quiet_hours=True)
    await system.verify(victim, "sms")  # a code never waits for the morning
    await system.wait_for_matching(agency, reachable_contacts=1)
    await system.push(agency, key, [custody_record(f"book-{case}", case, "BOOKED")])  # informational: waits

    async with ops_admin(system) as (ops, csrf):
        deadline = time.monotonic() + 30
        while not (found := (await ops.get("/api/notifications", params={"q": case})).json()):
            assert time.monotonic() < deadline, "the pending notice never reached the dashboard"
            await asyncio.sleep(0.5)
        notification_id = found[0]["notification_id"]
        blocked = await ops.post(
            f"/actions/notifications/{notification_id}/block",
            data={"csrf_token": csrf, "reason": "feed record under investigation"},
        )
        assert blocked.status_code == 200, blocked.text
        detail = (await ops.get(f"/api/notifications/{notification_id}")).json()
        assert [block["reason"] for block in detail["blocks"]] == ["feed record under investigation"]

    view = await system.http.get(
        f"{system.stack.url('delivery')}/v1/notifications/{notification_id}",
        headers={"Authorization": f"Bearer {system.stack.secrets['OPERATOR_TOKEN']}"},
    )
    assert view.json()["next_attempt_at"] is None
    assert view.json()["outcome"] == "stopped"
    await asyncio.sleep(QUIET_PERIOD)
    assert len(await system.received("sms", number)) == 1  # the code only
