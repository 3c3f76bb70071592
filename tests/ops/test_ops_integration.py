"""The ops service against real Kafka and PostgreSQL (and a stand-in of ingest's feed-health API)."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared.envelope import decode, encode, new_event
from shared.events import CustodyStatusChanged, DeliveryStatus, NotificationStatusChanged, OpsAlert, SubjectIdentifier
from shared.kafka.records import H_ERROR, H_ORIGINAL_TOPIC, header
from shared.settings import KafkaSettings
from shared.topics import (
    CUSTODY_STATUS_CHANGED,
    NOTIFICATION_STATUS_CHANGED,
    OPS_ALERT,
    consumer_group_topics,
    dead_letter_topic,
    ensure_topics,
)
from shared.vocabulary import Channel, CustodyStatus, IdentifierKind
from tests.kafkautil import produce_raw, read_topic
from tests.ops.conftest import ADMIN, FeedHealthServer, eventually, log_in

pytestmark = pytest.mark.integration

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def status_event(
    notification_id: str,
    status: DeliveryStatus,
    *,
    provider: str,
    at: datetime,
    case: str = "CASE-1",
    error_code: str | None = None,
    contact_masked: str = "+1•••••••67",
    attempt: int = 1,
    channel: Channel = Channel.SMS,
) -> bytes:
    change = NotificationStatusChanged(
        notification_id=notification_id,
        subscription_id=f"sub-{notification_id}",
        agency_id="county-jail",
        channel=channel,
        provider=provider,
        status=status,
        error_code=error_code,
        attempt=attempt,
        at=at,
        contact_masked=contact_masked,
        case=SubjectIdentifier(kind=IdentifierKind.CASE_NUMBER, value=case),
        custody_event_id="custody-event-1",
        feed_received_at=at - timedelta(seconds=30) if status != DeliveryStatus.CREATED else None,
    )
    event = new_event(change, source="custodywatch/delivery", event_id=f"{notification_id}:{status.value}:{attempt}")
    return encode(event)


async def produce_statuses(kafka_settings: KafkaSettings, values: list[bytes]) -> None:
    topic = kafka_settings.topic(NOTIFICATION_STATUS_CHANGED.name)
    await produce_raw(kafka_settings, topic, [(b"key", value) for value in values])


async def create_operator_with_cli(database_url: str, username: str, role: str, password: str) -> tuple[int, str]:
    env = os.environ | {
        "OPS_ENVIRONMENT": "test",
        "OPS_DATABASE_URL": database_url,
        "OPS_NEW_OPERATOR_PASSWORD": password,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.ops.cli",
        "create-operator",
        "--username",
        username,
        "--role",
        role,
        env=env,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode()


async def dashboard(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/api/dashboard")
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


async def test_unauthenticated_requests_get_only_the_login_page(ops: httpx.AsyncClient) -> None:
    page = await ops.get("/", headers={"accept": "text/html"})
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2F"
    assert (await ops.get("/search?q=x")).headers["location"].startswith("/login?next=")
    assert (await ops.get("/api/dashboard")).status_code == 401
    assert (await ops.get("/api/notifications/abc")).status_code == 401
    assert (
        await ops.post("/actions/replay", data={"topic": "dlq.ops", "partition": 0, "offset": 0})
    ).status_code == 401
    assert (await ops.get("/docs")).status_code == 404
    assert (await ops.get("/openapi.json")).status_code == 404
    login = await ops.get("/login")
    assert login.status_code == 200
    assert "Operator login" in login.text
    assert "default-src 'self'" in login.headers["content-security-policy"]
    assert (await ops.get("/healthz")).status_code == 200
    assert (await ops.get("/static/dashboard.js")).status_code == 200
    # A forged cookie is no session.
    ops.cookies.set("cw_ops_session", "forged.value.here")
    assert (await ops.get("/api/dashboard")).status_code == 401


async def test_login_is_rate_limited_and_sessions_end_at_logout(ops: httpx.AsyncClient, pool: Any) -> None:
    for _ in range(3):
        wrong = await ops.post("/login", data={"username": ADMIN[0], "password": "not-the-password"})
        assert wrong.status_code == 401
        assert "Wrong username or password" in wrong.text
    blocked = await ops.post("/login", data={"username": ADMIN[0], "password": ADMIN[1]})
    assert blocked.status_code == 429
    assert "Too many failed logins" in blocked.text
    await pool.execute("DELETE FROM login_throttle")

    empty = await ops.post("/login", data={"username": "", "password": ""})
    assert empty.status_code == 400
    response = await ops.post("/login", data={"username": ADMIN[0], "password": ADMIN[1], "next": "//evil.example"})
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert ADMIN[1] not in str(await pool.fetch("SELECT * FROM operators"))

    csrf = await log_in(ops, *ADMIN)
    assert (await ops.post("/logout")).status_code == 403  # no CSRF token
    assert (await ops.post("/logout", data={"csrf_token": csrf})).status_code == 303
    assert (await ops.get("/api/dashboard")).status_code == 401
    logins = await pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'login' AND outcome = 'ok' AND username = $1", ADMIN[0]
    )
    assert logins == 2


async def test_delivery_progress_is_counted_searchable_and_masked(
    ops: httpx.AsyncClient, kafka_settings: KafkaSettings, unique: str
) -> None:
    await log_in(ops, *ADMIN)
    provider = f"p{unique}"
    now = datetime.now(UTC)
    delivered, failing = f"n1-{unique}", f"n2-{unique}"
    failure = status_event(
        failing, DeliveryStatus.TEMPORARY_FAILURE, provider=provider, at=now, case="case-2", error_code="30003"
    )
    await produce_statuses(
        kafka_settings,
        [
            status_event(delivered, DeliveryStatus.CREATED, provider=provider, at=now - timedelta(seconds=3)),
            status_event(delivered, DeliveryStatus.SENT, provider=provider, at=now - timedelta(seconds=2)),
            # Out of order: delivered arrives before sending; the current status must still end as delivered.
            status_event(delivered, DeliveryStatus.DELIVERED, provider=provider, at=now),
            status_event(delivered, DeliveryStatus.SENDING, provider=provider, at=now - timedelta(seconds=2.5)),
            failure,
            failure,  # redelivered: counted once
            status_event(
                f"n3-{unique}", DeliveryStatus.CREATED, provider=provider, at=now, contact_masked="+15551234567"
            ),
        ],
    )

    async def counted() -> dict[str, Any] | None:
        document = await dashboard(ops)
        rows = [row for row in document["delivery"]["last_hour"] if row["provider"] == provider]
        return document if rows and rows[0]["requested"] == 2 and rows[0]["failed"] == 1 else None

    document = await eventually(counted)
    (row,) = [row for row in document["delivery"]["last_hour"] if row["provider"] == provider]
    assert (row["channel"], row["requested"], row["sent"], row["delivered"], row["failed"]) == ("sms", 2, 1, 1, 1)
    assert document["delivery"]["retries_in_flight"] == 1
    latency = {entry["stage"]: entry for entry in document["delivery"]["latency"]}
    assert latency["feed_to_handoff"]["count"] == 1
    assert latency["feed_to_handoff"]["p50_seconds"] == pytest.approx(30.0)
    assert latency["feed_to_delivered"]["p90_seconds"] == pytest.approx(30.0)
    (newest_failure,) = [f for f in document["delivery"]["newest_failures"] if f["notification_id"] == failing]
    assert newest_failure["error_code"] == "30003"
    assert sum(column["failed_height"] > 0 for column in document["delivery"]["hourly"]) == 1

    detail = (await ops.get(f"/api/notifications/{delivered}")).json()
    assert detail["notification"]["status"] == "delivered"
    assert [entry["status"] for entry in detail["history"]] == ["created", "sending", "sent", "delivered"]
    assert detail["notification"]["contact_masked"] == "+1•••••••67"
    assert len((await ops.get(f"/api/notifications/{failing}")).json()["history"]) == 1

    by_case = (await ops.get("/api/notifications", params={"q": "CASE-2"})).json()
    assert [n["notification_id"] for n in by_case] == [failing]
    by_subscription = (await ops.get("/api/notifications", params={"q": f"sub-{delivered}"})).json()
    assert [n["notification_id"] for n in by_subscription] == [delivered]
    assert (await ops.get("/api/notifications/unknown")).status_code == 404
    assert (await ops.get("/api/notifications", params={"q": "x" * 300})).status_code == 400

    # A full phone number that should never have reached ops is not shown anywhere.
    leaked = (await ops.get(f"/api/notifications/n3-{unique}")).json()
    assert leaked["notification"]["contact_masked"] == "[phone redacted]"
    for path in ("/", f"/search?q=sub-n3-{unique}", f"/notifications/n3-{unique}", "/partials/live"):
        page = await ops.get(path)
        assert page.status_code == 200
        assert "5551234567" not in page.text
    assert "+1•••••••67" in (await ops.get(f"/notifications/{delivered}")).text

    metrics = (await ops.get("/metrics")).text
    assert f'cw_ops_notifications_total{{channel="sms",provider="{provider}",status="delivered"}} 1.0' in metrics
    assert (
        f'cw_ops_notifications_total{{channel="sms",provider="{provider}",status="temporary-failure"}} 1.0' in metrics
    )


async def test_stale_feed_is_red_and_alerted_once_per_outage(
    ops: httpx.AsyncClient, feed_health: FeedHealthServer, kafka_settings: KafkaSettings, unique: str
) -> None:
    await log_in(ops, *ADMIN)
    quiet, fresh = f"quiet-{unique}", f"fresh-{unique}"
    feed_health.add(quiet, quiet_minutes=90, interval=15)
    feed_health.add(fresh, quiet_minutes=5, interval=15)
    alerts_topic = kafka_settings.topic(OPS_ALERT.name)

    records = await read_topic(kafka_settings, alerts_topic, until=lambda r: len(r) >= 1)
    alert = decode(records[0].value).data
    assert isinstance(alert, OpsAlert)
    assert (alert.kind, alert.agency_id) == ("feed_stale", quiet)
    assert "quiet for 90 min" in alert.message

    async def shown() -> dict[str, Any] | None:
        document = await dashboard(ops)
        return document if document["alerts"] and len(document["feeds"]["feeds"]) == 2 else None

    document = await eventually(shown)
    feeds = {feed["agency_id"]: feed for feed in document["feeds"]["feeds"]}
    assert feeds[quiet]["stale"]
    assert not feeds[fresh]["stale"]
    assert feeds[quiet]["records_accepted"] == 120
    assert feeds[quiet]["in_custody"] == 321
    assert document["alerts"][0]["kind"] == "feed_stale"
    page = (await ops.get("/")).text
    assert f'class="feed stale" data-agency-id="{quiet}"' in page
    assert f'class="feed fresh" data-agency-id="{fresh}"' in page
    metrics = (await ops.get("/metrics")).text
    assert f'cw_ops_feed_stale{{agency="{quiet}"}} 1.0' in metrics
    assert f'cw_ops_feed_stale{{agency="{fresh}"}} 0.0' in metrics

    await asyncio.sleep(1.5)  # three more polls: still stale, no second alert
    feed_health.add(quiet, quiet_minutes=1, interval=15)
    records = await read_topic(kafka_settings, alerts_topic, until=lambda r: len(r) >= 2)
    await asyncio.sleep(1.0)
    records = await read_topic(kafka_settings, alerts_topic, until=lambda r: len(r) >= 2)
    kinds = [(decode(r.value).data.kind, decode(r.value).data.agency_id) for r in records]  # type: ignore[attr-defined]
    assert kinds == [("feed_stale", quiet), ("feed_recovered", quiet)]


async def dead_letter(kafka_settings: KafkaSettings, group: str, *, original: str, error: str) -> str:
    event = new_event(
        CustodyStatusChanged(
            agency_id="county-jail",
            subject_id="s-1",
            identifiers=[SubjectIdentifier(kind=IdentifierKind.CASE_NUMBER, value="CASE-9")],
            status=CustodyStatus.RELEASED,
            effective_at=datetime.now(UTC),
            agency_record_id="r-1",
            feed_batch_id="b-1",
            received_at=datetime.now(UTC),
        ),
        source="custodywatch/ingest",
    )
    producer = AIOKafkaProducer(**kafka_settings.producer_kwargs())
    await producer.start()
    try:
        await producer.send_and_wait(
            kafka_settings.topic(dead_letter_topic(group)),
            value=encode(event),
            key=b"county-jail/s-1",
            headers=[
                ("ce_id", event.id.encode()),
                (H_ORIGINAL_TOPIC, original.encode()),
                ("cw-original-partition", b"0"),
                ("cw-original-offset", b"7"),
                (H_ERROR, error.encode()),
            ],
        )
    finally:
        await producer.stop()
    return event.id


async def test_lag_dead_letters_and_audited_replay(
    ops: httpx.AsyncClient, kafka_settings: KafkaSettings, watched_group: str, database_url: str, pool: Any
) -> None:
    source = kafka_settings.topic(CUSTODY_STATUS_CHANGED.name)
    await ensure_topics(kafka_settings, [CUSTODY_STATUS_CHANGED, *consumer_group_topics(watched_group)])
    await produce_raw(kafka_settings, source, [(b"same-key", f"m{i}".encode()) for i in range(5)])
    consumer = AIOKafkaConsumer(**kafka_settings.consumer_kwargs(watched_group))
    await consumer.start()
    try:
        partition = (await read_topic(kafka_settings, source, until=lambda r: len(r) == 5))[0].partition
        tp = TopicPartition(source, partition)
        consumer.assign([tp])
        await consumer.commit({tp: 2})
    finally:
        await consumer.stop()
    event_id = await dead_letter(kafka_settings, watched_group, original=source, error="ValueError: +15551234567 boom")

    admin_csrf = await log_in(ops, *ADMIN)

    async def pipeline_seen() -> dict[str, Any] | None:
        pipeline = (await dashboard(ops))["pipeline"]
        lag = {(row["group"], row["topic"]): row["lag"] for row in pipeline["lag"]}
        queues = {q["group"]: q for q in pipeline["dead_letter_queues"]}
        ready = lag.get((watched_group, CUSTODY_STATUS_CHANGED.name)) == 3 and queues[watched_group]["size"] == 1
        return pipeline if ready else None

    pipeline = await eventually(pipeline_seen)
    queue = next(q for q in pipeline["dead_letter_queues"] if q["group"] == watched_group)
    (letter,) = queue["newest"]
    assert letter["event_id"] == event_id
    assert letter["original_topic"] == CUSTODY_STATUS_CHANGED.name
    assert letter["error"] == "ValueError: [phone redacted] boom"
    metrics = (await ops.get("/metrics")).text
    assert f'cw_ops_consumer_lag{{group="{watched_group}",topic="{CUSTODY_STATUS_CHANGED.name}"}} 3.0' in metrics
    assert f'cw_ops_dlq_size{{group="{watched_group}"}} 1.0' in metrics

    # A viewer sees the dead letter but may not replay it (nor pause an agency); the refusal is audited.
    code, output = await create_operator_with_cli(database_url, "vera", "viewer", "viewer-password-1")
    assert code == 0, output
    code, output = await create_operator_with_cli(database_url, "vera", "viewer", "viewer-password-1")
    assert code == 1
    assert "already exists" in output
    async with httpx.AsyncClient(transport=ops._transport, base_url="http://testserver") as viewer:
        viewer_csrf = await log_in(viewer, "vera", "viewer-password-1")
        assert 'class="replay"' not in (await viewer.get("/")).text
        form = {"csrf_token": viewer_csrf, "topic": queue["topic"], "partition": "0", "offset": "0"}
        refused = await viewer.post("/actions/replay", data=form)
        assert refused.status_code == 403
        assert "only admins" in refused.text
        paused = await viewer.post(
            "/actions/agencies/county-jail/notices", data={"csrf_token": viewer_csrf, "paused": "true"}
        )
        assert paused.status_code == 403
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE username = 'vera' AND outcome = 'forbidden'") == 2

    form = {"topic": queue["topic"], "partition": str(letter["partition"]), "offset": str(letter["offset"])}
    assert (await ops.post("/actions/replay", data=form)).status_code == 403  # no CSRF token
    replayed = await ops.post("/actions/replay", data=form | {"csrf_token": admin_csrf})
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["ok"]

    records = await read_topic(kafka_settings, source, until=lambda r: len(r) == 6)
    (copy,) = [record for record in records if record.value not in {f"m{i}".encode() for i in range(5)}]
    assert decode(copy.value).id == event_id
    assert copy.key == b"county-jail/s-1"
    assert header(copy, "cw-replayed-by") == ADMIN[0]
    assert header(copy, H_ORIGINAL_TOPIC) is None
    assert header(copy, "ce_id") == event_id

    audit = await pool.fetchrow("SELECT * FROM audit_log WHERE action = 'replay_dead_letter' AND outcome = 'ok'")
    assert audit["username"] == ADMIN[0]
    assert audit["target"] == f"{queue['topic']}:{letter['partition']}:{letter['offset']}"
    assert audit["detail"]["to"] == CUSTODY_STATUS_CHANGED.name
    audit_page = (await ops.get("/audit")).text
    assert "replay_dead_letter" in audit_page

    again = await ops.post("/actions/replay", data=form | {"csrf_token": admin_csrf})
    assert again.status_code == 409
    missing = await ops.post("/actions/replay", data=form | {"csrf_token": admin_csrf, "offset": "99"})
    assert missing.status_code == 404
    elsewhere = await ops.post("/actions/replay", data=form | {"csrf_token": admin_csrf, "topic": "dlq.nobody"})
    assert elsewhere.status_code == 400
    garbage = await ops.post("/actions/replay", data=form | {"csrf_token": admin_csrf, "offset": "x"})
    assert garbage.status_code == 422
    assert "offset" in garbage.json()["detail"]


async def test_admin_pauses_and_resumes_an_agency_audited(
    ops: httpx.AsyncClient, feed_health: FeedHealthServer, unique: str, pool: Any
) -> None:
    agency = f"jail-{unique}"
    feed_health.add(agency, quiet_minutes=1)
    csrf = await log_in(ops, *ADMIN)
    paused = await ops.post(f"/actions/agencies/{agency}/notices", data={"csrf_token": csrf, "paused": "true"})
    assert paused.status_code == 200, paused.text
    assert feed_health.patches == [(agency, {"notices_paused": True})]

    async def shown_paused() -> bool:
        feeds = (await dashboard(ops))["feeds"]["feeds"]
        return any(feed["agency_id"] == agency and feed["notices_paused"] for feed in feeds)

    await eventually(shown_paused)
    resumed = await ops.post(f"/actions/agencies/{agency}/notices", data={"csrf_token": csrf, "paused": "false"})
    assert resumed.status_code == 200
    assert feed_health.patches[-1] == (agency, {"notices_paused": False})

    unknown = await ops.post(
        "/actions/agencies/nowhere/notices",
        data={"csrf_token": csrf, "paused": "true"},
        headers={"accept": "text/html"},
    )
    assert unknown.status_code == 502
    assert "Not changed" in unknown.text
    rows = await pool.fetch("SELECT username, action, target, outcome FROM audit_log WHERE action LIKE '%_notices'")
    assert [tuple(row) for row in rows] == [
        (ADMIN[0], "pause_notices", agency, "ok"),
        (ADMIN[0], "resume_notices", agency, "ok"),
        (ADMIN[0], "pause_notices", "nowhere", "failed"),
    ]


async def test_runs_as_a_process_configured_from_the_environment(
    database_url: str, kafka_settings: KafkaSettings, feed_health: FeedHealthServer, tmp_path: Any
) -> None:
    from tests.apps import ServiceProcess

    env = {
        "OPS_ENVIRONMENT": "test",
        "OPS_DATABASE_URL": database_url,
        "OPS_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "OPS_KAFKA__TOPIC_PREFIX": kafka_settings.topic_prefix,
        "OPS_INGEST_URL": feed_health.url,
        "OPS_INGEST_ADMIN_TOKEN": "test-ingest-admin-token",
        "OPS_BOOTSTRAP_ADMIN_USERNAME": "boot",
        "OPS_BOOTSTRAP_ADMIN_PASSWORD": "boot-password-123",
    }
    process = ServiceProcess("services.ops", env, port_variable="OPS_HTTP_PORT", log_dir=tmp_path)
    process.start()
    try:
        await process.wait_ready()
        async with httpx.AsyncClient(base_url=process.url) as client:
            await log_in(client, "boot", "boot-password-123")
            assert (await client.get("/api/dashboard")).status_code == 200
            assert "cw_ops_retries_in_flight" in (await client.get("/metrics")).text
    finally:
        process.stop()
    assert "boot-password-123" not in process.log_path.read_text()
