"""Hostile input against the running system: poison messages on every consumed topic, a schemathesis sweep of
every service's API, and finally a scan of every topic and every log line for a contact point in clear.

The privacy scan is the last test of this file on purpose: it reads what every test before it left behind."""

from __future__ import annotations

import asyncio
import collections
import math
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from devservers.driver import SystemDriver, Victim, custody_record
from devservers.stack import Stack
from services.matching.consumers import CONSUMED_TOPICS as MATCHING_CONSUMES
from services.subscription.consumers import CONSUMED_TOPICS as SUBSCRIPTION_CONSUMES
from shared.logging import EMAIL
from shared.topics import ALL_TOPICS, dead_letter_topic, retry_topic
from tests.e2e.hostile import (
    POISON_KINDS,
    Sweep,
    contact_pattern,
    find_contacts,
    header,
    poison,
    read_all,
    run_sweep,
    sweep_session,
)
from tests.e2e.test_safety_guards import night_zone

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
CONSUMING_SERVICES = ("subscription", "matching", "delivery", "ops")
ANY_E164 = re.compile(r"\+[1-9]\d{6,14}(?!\d)")
USED_CONTACTS: set[str] = set()
"""Every phone number and email these tests gave the system; the privacy scan looks for each of them."""


def phone() -> str:
    number = f"+1512555{uuid.uuid4().int % 10_000:04d}"
    USED_CONTACTS.add(number)
    return number


def email(token: str) -> str:
    address = f"Hostile.Victim-{token}@example.org"
    USED_CONTACTS.add(address)
    return address


def bootstrap(stack: Stack) -> str:
    """Where this test process reads and writes any topic: the session broker's harness listener (PLAINTEXT, a super
    user) when the services authenticate, else the services' own address."""
    from tests import servers

    identity = servers.kafka_identity()
    services = stack.env["INGEST_KAFKA__BOOTSTRAP_SERVERS"]
    return identity.harness if identity is not None and services == identity.bootstrap else services


def prefix(stack: Stack) -> str:
    return stack.env["INGEST_KAFKA__TOPIC_PREFIX"]


def consumer_group(stack: Stack, service: str) -> str:
    """Each consuming service's group id (matching's is configurable; the others are fixed in their code)."""
    if service == "matching":
        return stack.env.get("MATCHING_CONSUMER_GROUP", "matching")
    return service


async def subscribed_victim(system: SystemDriver, token: str) -> tuple[str, str, str, Victim]:
    """A new agency with one victim verified by SMS and email; returns agency, key, case and the victim."""
    agency, case = f"hostile-{token}", f"CR-H-{token}"
    key = await system.create_agency(agency)
    victim = await system.subscribe(agency, case, sms=phone(), email=email(token))
    await system.verify(victim, "sms")
    await system.verify(victim, "email")
    return agency, key, case, victim


@asynccontextmanager
async def ops_client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client signed in to the ops dashboard as its bootstrap admin."""
    async with httpx.AsyncClient(base_url=stack.url("ops"), timeout=30) as client:
        answer = await client.post(
            "/login", data={"username": "admin", "password": stack.secrets["OPS_ADMIN_PASSWORD"], "next": "/"}
        )
        assert answer.status_code in (200, 303), answer.status_code
        yield client


# --- 1. poison messages ---------------------------------------------------------------------------------------------


async def test_poison_messages_on_every_topic_land_on_the_dead_letter_topics_and_the_flow_goes_on(
    stack: Stack, system: SystemDriver
) -> None:
    # The topic table says who consumes what; where a service's code lists its topics, it must agree.
    for service, consumed in (("subscription", SUBSCRIPTION_CONSUMES), ("matching", MATCHING_CONSUMES)):
        assert {spec.name for spec in consumed} == {spec.name for spec in ALL_TOPICS if service in spec.consumers}
    token = uuid.uuid4().hex[:8]
    agency, key, case, victim = await subscribed_victim(system, token)
    assert victim.sms is not None
    assert victim.email is not None

    # (consumer group, topic the poison was sent to, message key) -> what the dead letter's error must say
    expected: dict[tuple[str, str, str], tuple[str, ...]] = {}
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap(stack))
    await producer.start()
    try:
        for spec in ALL_TOPICS:
            consumers = [service for service in CONSUMING_SERVICES if service in spec.consumers]
            for kind in POISON_KINDS:
                message = poison(kind, spec.payload)
                topic, message_key = f"{prefix(stack)}{spec.name}", f"poison-{token}-{kind}"
                await producer.send_and_wait(topic, message.value, key=message_key.encode())
                for service in consumers:
                    expected[(consumer_group(stack, service), topic, message_key)] = message.expected_error
        # Each group's retry topic is consumed too: poison there must not block its retries.
        for service in CONSUMING_SERVICES:
            group = consumer_group(stack, service)
            topic, message_key = f"{prefix(stack)}{retry_topic(group)}", f"poison-{token}-retry"
            message = poison("not-json", ALL_TOPICS[0].payload)
            await producer.send_and_wait(topic, message.value, key=message_key.encode())
            expected[(group, topic, message_key)] = message.expected_error
    finally:
        await producer.stop()
    assert {group for group, _, _ in expected} == {consumer_group(stack, s) for s in CONSUMING_SERVICES}

    dead_letter_topics = {group: f"{prefix(stack)}{dead_letter_topic(group)}" for group, _, _ in expected}
    found: dict[tuple[str, str, str], str] = {}
    deadline = time.monotonic() + 60
    while set(found) != set(expected) and time.monotonic() < deadline:
        for group, topic in dead_letter_topics.items():
            for record in await read_all(bootstrap(stack), [topic], committed_only=True):
                message_key = (record.key or b"").decode(errors="replace")
                original = header(record, "cw-original-topic") or ""
                if (group, original, message_key) in expected:
                    found[(group, original, message_key)] = header(record, "cw-error") or ""
        if set(found) != set(expected):
            await asyncio.sleep(1)
    missing = sorted(set(expected) - set(found))
    assert not missing, f"{len(missing)} poison messages never reached a dead-letter topic: {missing[:10]}"
    wrong = {place: error for place, error in found.items() if not all(reason in error for reason in expected[place])}
    assert not wrong, f"dead letters whose cw-error does not name the reason: {wrong}"

    # The flow goes on: a custody change still reaches the verified victim, and ops still records its delivery.
    await system.push(agency, key, [custody_record(f"r1-{token}", case, "BOOKED")])
    sms = await system.wait_for("sms", victim.sms, lambda m: any("BOOKED INTO CUSTODY" in x["body"] for x in m))
    await system.wait_for(
        "email", victim.email, lambda m: any("BOOKED INTO CUSTODY" in (x.get("text") or "") for x in m)
    )
    notice = next(m for m in sms if "BOOKED INTO CUSTODY" in m["body"])
    notification_id = str(notice["reference"]).rsplit(".a", 1)[0]
    async with ops_client(stack) as ops:
        deadline = time.monotonic() + 30
        while (answer := await ops.get(f"/api/notifications/{notification_id}")).status_code != 200:
            assert answer.status_code == 404, answer.status_code
            assert time.monotonic() < deadline, "ops never saw the notice's delivery after the poison messages"
            await asyncio.sleep(0.5)


# --- 2. schemathesis ------------------------------------------------------------------------------------------------


def test_no_generated_request_makes_any_service_answer_500(stack: Stack) -> None:
    """Valid and invalid requests generated from every service's OpenAPI contract, against the running system.

    Ops hides its OpenAPI document, so every sweep reads the checked-in contracts (kept equal to the services'
    documents by tests/test_contracts.py). Requests come from 127.0.0.2 so their rate limits are their own."""
    token = uuid.uuid4().hex[:8]
    contracts = ROOT / "contracts" / "openapi"
    agency = f"sweep-{token}"
    admin = {"Authorization": f"Bearer {stack.secrets['ADMIN_TOKEN']}"}
    with httpx.Client(base_url=stack.url("ingest"), headers=admin, timeout=30) as client:
        created = client.post("/v1/admin/agencies", json={"agency_id": agency, "name": "Sweep", "timezone": "UTC"})
        assert created.status_code == 201, created.text
        api_key = client.post(f"/v1/admin/agencies/{agency}/keys", json={"label": "sweep"}).json()["api_key"]

    ops_session = sweep_session()
    login = ops_session.post(
        f"{stack.url('ops')}/login",
        data={"username": "admin", "password": stack.secrets["OPS_ADMIN_PASSWORD"], "next": "/"},
    )
    assert login.status_code == 200, login.status_code
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login.text)
    assert csrf is not None, "no CSRF token on the dashboard after logging in"

    def agency_scoped(label: str) -> bool:
        return label.split(" ", 1)[1].startswith("/v1/agencies/")

    ops_public = {"GET /login", "POST /login", "GET /healthz", "GET /readyz"}
    sweeps = [
        Sweep(
            contracts / "ingest.json",
            stack.url("ingest"),
            headers=admin,
            max_examples=10,
            wanted=lambda label: not agency_scoped(label),
        ),
        Sweep(
            contracts / "ingest.json",
            stack.url("ingest"),
            headers={"Authorization": f"Bearer {api_key}"},
            path_parameters={"agency_id": agency},
            max_examples=15,
            wanted=agency_scoped,
        ),
        Sweep(contracts / "subscription.json", stack.url("subscription"), max_examples=15),
        Sweep(
            contracts / "matching.json",
            stack.url("matching"),
            max_examples=10,
            headers={"Authorization": f"Bearer {stack.secrets['OPERATOR_TOKEN']}"},
        ),
        Sweep(
            contracts / "delivery.json",
            stack.url("delivery"),
            max_examples=12,
            headers={"Authorization": f"Bearer {stack.secrets['OPERATOR_TOKEN']}"},
        ),
        # Signed out, every page and API of the dashboard only sends the visitor to the login page (a body over the
        # form cap is refused first: body limits are checked before anything reads the request).
        Sweep(
            contracts / "ops.json",
            stack.url("ops"),
            max_examples=6,
            wanted=lambda label: label not in ops_public,
            allowed_statuses=frozenset({303, 401, 413}),
        ),
        Sweep(
            contracts / "ops.json",
            stack.url("ops"),
            session=ops_session,
            headers={"x-csrf-token": csrf.group(1)},
            path_parameters={"agency_id": agency},
            max_examples=10,
            wanted=lambda label: label not in {"POST /logout", "POST /login", "GET /login"},
        ),
    ]
    started = time.monotonic()
    results = [run_sweep(sweep) for sweep in sweeps]
    elapsed = time.monotonic() - started
    sent = sum(result.sent for result in results)
    problems = [problem for result in results for problem in result.problems]
    assert sent > 500, f"the sweep sent only {sent} requests"
    assert not problems, f"{len(problems)} bad answers to {sent} requests in {elapsed:.0f} s:\n" + "\n".join(problems)
    # Each authenticated sweep got past authentication at least sometimes (a sweep of 401s would prove nothing).
    for sweep, result in zip(sweeps, results, strict=True):
        if sweep.allowed_statuses is None:
            succeeded = sum(count for status, count in result.statuses.items() if 200 <= status < 300)
            assert succeeded > 0, f"no request to {sweep.base_url} succeeded: {dict(result.statuses)}"
    assert ops_session.get(f"{stack.url('ops')}/api/dashboard", allow_redirects=False).status_code == 200


# --- 2b. who may get in, and how much they may send -----------------------------------------------------------------


async def test_matching_counts_are_for_operators_only(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url("matching"), timeout=30) as client:
        anonymous = await client.get("/v1/matching/stats", params={"agency_id": "demo-county-jail"})
        assert anonymous.status_code == 401
        operator = {"Authorization": f"Bearer {stack.secrets['OPERATOR_TOKEN']}"}
        assert (await client.get("/v1/matching/stats", headers=operator)).status_code == 200


async def test_fifty_parallel_wrong_logins_do_not_keep_the_admin_out(stack: Stack) -> None:
    attacker = {"X-Forwarded-For": f"203.0.113.{uuid.uuid4().int % 250 + 1}"}
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=stack.url("ops"), timeout=60) as client:
        guesses = await asyncio.gather(
            *(
                client.post("/login", data={"username": "admin", "password": f"guess-{n}"}, headers=attacker)
                for n in range(50)
            )
        )
    elapsed = time.monotonic() - started
    statuses = collections.Counter(answer.status_code for answer in guesses)
    assert set(statuses) == {401, 429}, statuses
    # Five free tries, then one more each time the doubling wait (1 s, 2 s, 4 s...) has passed: claimed atomically,
    # so parallel guesses get no extra ones.
    assert statuses[401] <= 5 + 1 + math.floor(math.log2(1 + elapsed)), (statuses, elapsed)
    other_client = {"X-Forwarded-For": "198.51.100.20"}
    async with httpx.AsyncClient(base_url=stack.url("ops"), headers=other_client, timeout=30) as operator:
        login = {"username": "admin", "password": stack.secrets["OPS_ADMIN_PASSWORD"], "next": "/"}
        answer = await operator.post("/login", data=login, follow_redirects=True)
        assert answer.status_code == 200
        assert str(answer.url).rstrip("/") == stack.url("ops")


async def test_json_nested_100000_deep_is_a_400_and_leaves_no_batch(stack: Stack, system: SystemDriver) -> None:
    token = uuid.uuid4().hex[:8]
    agency = f"deep-{token}"
    key = await system.create_agency(agency)
    url = f"{stack.url('ingest')}/v1/agencies/{agency}/custody-events"
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": f"deep-{token}"}
    deep = b'{"records": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    async with httpx.AsyncClient(timeout=60) as client:
        refused = await client.post(url, content=deep, headers=headers | {"Content-Type": "application/json"})
        assert refused.status_code == 400
        assert "nested deeper than" in refused.json()["detail"]
        # Had the deep body been stored under this key, the same key with another body would now get a 422.
        record = custody_record(f"r-{token}", f"CR-D-{token}", "BOOKED")
        accepted = await client.post(url, json={"records": [record]}, headers=headers)
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["summary"]["accepted"] == 1


@pytest.mark.parametrize(
    ("service", "path"), [("subscription", "/v1/sms/inbound"), ("delivery", "/v1/callbacks/sms/local-sms")]
)
async def test_a_ten_mib_unsigned_webhook_is_refused_before_it_is_parsed(stack: Stack, service: str, path: str) -> None:
    body = b"Body=" + b"x" * (10 * 1024 * 1024)
    async with httpx.AsyncClient(base_url=stack.url(service), timeout=60) as client:
        answer = await client.post(path, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert answer.status_code == 413
        assert "65536 bytes" in answer.json()["detail"]
        unsigned = await client.post(path, data={"Body": "STOP", "From": "+15125550100"})
        assert unsigned.status_code in (401, 403)  # a small body gets as far as the signature check


async def test_an_unsigned_bounce_report_is_refused_by_its_size_before_its_signature(stack: Stack) -> None:
    headers = {"Content-Type": "message/rfc822"}
    async with httpx.AsyncClient(base_url=stack.url("delivery"), timeout=60) as client:
        huge = await client.post("/v1/bounces/relay", content=b"x" * (10 * 1024 * 1024), headers=headers)
        assert huge.status_code == 413
        large = await client.post("/v1/bounces/relay", content=b"x" * (100 * 1024), headers=headers)
        assert large.status_code == 413
        assert "65536 bytes" in large.json()["detail"]
        small = await client.post("/v1/bounces/relay", content=b"Subject: hi\n\nnot signed\n", headers=headers)
        assert small.status_code == 403


# --- 2c. email refusals: only the recipient's own fault disables an address -------------------------------------


@asynccontextmanager
async def email_sink_configured(system: SystemDriver, **changes: list[str]) -> AsyncIterator[None]:
    """The session's email sink misbehaving as asked for the block, and as before afterwards."""
    config = f"{system.stack.url('email_sink')}/sink/config"
    before = (await system.http.get(config)).json()
    (await system.http.post(config, json=changes)).raise_for_status()
    try:
        yield
    finally:
        (await system.http.post(config, json={name: before[name] for name in changes})).raise_for_status()


async def ended_email_notice(
    system: SystemDriver, subscription_id: str, outcome: str, within: float = 60.0
) -> dict[str, Any]:
    """The subscription's status-change email notice, once delivery gave it ``outcome`` (operator API)."""
    headers = {"Authorization": f"Bearer {system.stack.secrets['OPERATOR_TOKEN']}"}
    deadline = time.monotonic() + within
    while True:
        answer = await system.http.get(
            f"{system.stack.url('delivery')}/v1/notifications",
            params={"subscription_id": subscription_id},
            headers=headers,
        )
        answer.raise_for_status()
        ended = [
            notice
            for notice in answer.json()["notifications"]
            if notice["channel"] == "email" and notice["kind"] == "status_change" and notice["outcome"] == outcome
        ]
        if ended:
            return dict(ended[0])
        assert time.monotonic() < deadline, f"the email notice never became {outcome!r}"
        await asyncio.sleep(0.25)


async def test_a_notice_held_for_quiet_hours_is_never_sent_once_its_subject_is_sealed(system: SystemDriver) -> None:
    token = uuid.uuid4().hex[:8]
    agency, case = f"seal-{token}", f"SE-{token}"
    key = await system.create_agency(agency)
    number = f"+1737559{int(token, 16) % 10_000:04d}"
    victim = await system.subscribe(agency, case, sms=number, timezone=night_zone(), quiet_hours=True)
    await system.verify(victim, "sms")
    await system.wait_for_matching(agency, reachable_contacts=1)
    await system.push(agency, key, [custody_record(f"book-{token}", case, "BOOKED")])  # informational: waits

    delivery = system.stack.url("delivery")
    operator = {"Authorization": f"Bearer {system.stack.secrets['OPERATOR_TOKEN']}"}
    deadline = time.monotonic() + 30
    while not (
        held := (await system.http.get(f"{delivery}/v1/notifications", params={"case": case}, headers=operator)).json()[
            "notifications"
        ]
    ):
        assert time.monotonic() < deadline, "the notice never reached delivery"
        await asyncio.sleep(0.25)
    assert held[0]["next_attempt_at"] is not None, "held for the morning"

    sealed = await system.http.post(
        f"{system.stack.url('ingest')}/v1/agencies/{agency}/sealed-subjects",
        json={"identifiers": [{"kind": "case_number", "value": case}]},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert sealed.status_code == 200, sealed.text
    deadline = time.monotonic() + 30
    while (
        view := (
            await system.http.get(f"{delivery}/v1/notifications/{held[0]['notification_id']}", headers=operator)
        ).json()
    )["outcome"] != "stopped":
        assert time.monotonic() < deadline, f"the held notice was not ended by the seal: {view['outcome']}"
        await asyncio.sleep(0.25)
    assert view["next_attempt_at"] is None
    assert [m for m in await system.received("sms", number) if "code" not in m["body"].lower()] == []


async def test_a_550_to_our_sender_leaves_the_victims_email_active(stack: Stack, system: SystemDriver) -> None:
    token = uuid.uuid4().hex[:8]
    agency, key, case, victim = await subscribed_victim(system, token)
    assert victim.email is not None
    await system.wait_for_matching(agency, reachable_contacts=2)
    async with email_sink_configured(system, refused_senders=[stack.env["DELIVERY_SMTP__FROM_ADDRESS"]]):
        await system.push(agency, key, [custody_record(f"r1-{token}", case, "BOOKED")])
        refused = await ended_email_notice(system, victim.subscription_id, "failed")
    assert (refused["status"], refused["attempts"][-1]["error_code"]) == ("technical-failure", "MAIL 550")
    before = len(await system.received("email", victim.email))
    await system.push(agency, key, [custody_record(f"r2-{token}", case, "RELEASED")])
    await system.wait_for("email", victim.email, lambda messages: len(messages) > before)
    await system.wait_for_matching(agency, reachable_contacts=2)


async def test_a_late_bounce_of_the_victims_address_disables_it(stack: Stack, system: SystemDriver) -> None:
    token = uuid.uuid4().hex[:8]
    agency, key, case, victim = await subscribed_victim(system, token)
    assert victim.email is not None
    await system.wait_for_matching(agency, reachable_contacts=2)
    async with email_sink_configured(system, late_bounce_addresses=[victim.email]):
        await system.push(agency, key, [custody_record(f"r1-{token}", case, "BOOKED")])
        # SMTP took it ("sent"), then the relay's report of the mailbox's 5.1.1 arrives and ends it.
        bounced = await ended_email_notice(system, victim.subscription_id, "stopped")
    assert (bounced["status"], bounced["attempts"][-1]["error_code"]) == ("permanent-failure", "5.1.1")
    # The address is off everywhere: subscription disabled it and matching no longer counts it.
    await system.wait_for_matching(agency, reachable_contacts=1)


# --- 3. privacy: last, so it sees what every test before it left ----------------------------------------------------


async def test_zz_no_topic_message_and_no_log_line_holds_a_contact_point_in_clear(
    stack: Stack, system: SystemDriver
) -> None:
    # Traffic that handles contact points in clear at the edges: subscribe, verify, a notice, HELP and STOP replies.
    token = uuid.uuid4().hex[:8]
    agency, key, case, victim = await subscribed_victim(system, token)
    assert victim.sms is not None
    assert victim.email is not None
    unverified = await system.subscribe(agency, case, sms=phone(), language="es")
    assert (await system.reply_sms(victim.sms, "HELP")).status_code == 200
    await system.push(agency, key, [custody_record(f"r1-{token}", case, "BOOKED")])
    await system.wait_for("sms", victim.sms, lambda m: any("BOOKED INTO CUSTODY" in x["body"] for x in m))
    await system.wait_for(
        "email", victim.email, lambda m: any("BOOKED INTO CUSTODY" in (x.get("text") or "") for x in m)
    )
    assert (await system.reply_sms(victim.sms, "STOP")).status_code == 200
    assert unverified.sms is not None
    assert (await system.reply_sms(unverified.sms, "hello?")).status_code == 200
    await asyncio.sleep(2)  # the last events reach their topics and logs

    # Every contact used in the session: ours, and every address the system sent anything to (other tests').
    contacts = set(USED_CONTACTS)
    for message in (await system.http.get(f"{stack.url('sms_sink')}/sink/messages")).json():
        contacts.add(message["to"])
    for message in (await system.http.get(f"{stack.url('email_sink')}/sink/emails")).json():
        contacts.update(message["rcpt_tos"])
    patterns = {contact: contact_pattern(contact) for contact in contacts}
    assert len(patterns) >= 4

    leaks: list[str] = []
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(stack))
    await admin.start()
    try:
        topics = sorted(topic for topic in await admin.list_topics() if topic.startswith(prefix(stack)))
    finally:
        await admin.close()
    expected_topics = {f"{prefix(stack)}{spec.name}" for spec in ALL_TOPICS}
    assert expected_topics <= set(topics), sorted(expected_topics - set(topics))
    assert any(".dlq." in f".{topic}" for topic in topics)
    assert any(".retry." in f".{topic}" for topic in topics)
    records = await read_all(bootstrap(stack), topics, committed_only=False, within=120)
    assert len(records) > 50, len(records)
    for record in records:
        parts = [record.key or b"", record.value or b""]
        parts += [key.encode() + b"=" + bytes(value) for key, value in record.headers or ()]
        text = b"\n".join(parts).decode(errors="replace")
        for found in find_contacts(text, patterns):
            leaks.append(f"{record.topic}[{record.partition}]@{record.offset}: {found}")

    # sinks.log is the provider stand-ins' own log: like Twilio's and a mail server's, it sees the addresses (the
    # SMTP library logs each RCPT TO). Every log line of our services is scanned.
    logs = sorted(path for path in stack.log_dir.glob("*.log") if path.name != "sinks.log")
    assert {path.stem for path in logs} >= {"ingest", "subscription", "matching", "delivery", "ops"}
    lines = 0
    for path in logs:
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            lines += 1
            for found in find_contacts(line, patterns):
                leaks.append(f"{path.name}:{number}: {found}")
            # Nor any other address or E.164 number: what the log redactor would have masked must not be there.
            if EMAIL.search(line) or ANY_E164.search(line):
                leaks.append(f"{path.name}:{number}: an email address or E.164 number")
    assert lines > 20, lines
    assert not leaks, f"{len(leaks)} clear-text contact points in {len(records)} messages and {lines} log lines:\n" + (
        "\n".join(leaks[:50])
    )
