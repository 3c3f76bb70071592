"""The dashboard's safety guards (held storms, overrides, blocks) on real Kafka and PostgreSQL; ingest and delivery
answer through ``httpx.MockTransport`` stand-ins that keep to their contracts (see ``tests/ops/standins.py``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from services.ops.app import create_app
from services.ops.auth.domain import Role, hash_password
from services.ops.auth.store import create_operator
from services.ops.settings import OpsSettings
from shared.envelope import encode, new_event
from shared.events import DeliveryStatus, OpsAlert
from shared.settings import KafkaSettings
from shared.topics import OPS_ALERT
from shared.vocabulary import Channel
from tests.apps import running_app
from tests.kafkautil import produce_raw
from tests.ops.conftest import ADMIN, eventually, log_in
from tests.ops.standins import DELIVERY_TOKEN, INGEST_TOKEN, DeliveryStandIn, IngestStandIn, call_attempt, storm_hold
from tests.ops.test_ops_integration import dashboard, produce_statuses, status_event

pytestmark = pytest.mark.integration

VIEWER = ("vicky", "viewer-password-for-tests")
HTML = {"accept": "text/html"}


@pytest.fixture
def ingest() -> IngestStandIn:
    return IngestStandIn()


@pytest.fixture
def delivery() -> DeliveryStandIn:
    return DeliveryStandIn()


@pytest.fixture
def guard_settings(database_url: str, kafka_settings: KafkaSettings) -> OpsSettings:
    return OpsSettings(
        environment="test",
        database_url=database_url,
        kafka=kafka_settings,
        ingest_url="http://ingest.test",
        ingest_admin_token=INGEST_TOKEN,
        delivery_url="http://delivery.test",
        delivery_operator_token=DELIVERY_TOKEN,
        feed_poll_interval_seconds=5.0,
        pipeline_poll_interval_seconds=5.0,
        storm_poll_interval_seconds=0.3,
        consumer_groups=["ops"],
        bootstrap_admin_username=ADMIN[0],
        bootstrap_admin_password=ADMIN[1],
        admin_action_limit=12,
    )


@pytest.fixture
async def ops(
    guard_settings: OpsSettings, ingest: IngestStandIn, delivery: DeliveryStandIn, pool: asyncpg.Pool
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(guard_settings, ingest_transport=ingest.transport(), delivery_transport=delivery.transport())
    async with running_app(app) as client:
        async with pool.acquire() as connection:
            await create_operator(connection, VIEWER[0], hash_password(VIEWER[1]), Role.VIEWER)
        yield client


@asynccontextmanager
async def viewer_client(ops: httpx.AsyncClient) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A second browser, logged in as the viewer; yields it and its CSRF token."""
    async with httpx.AsyncClient(transport=ops._transport, base_url="http://testserver") as viewer:
        yield viewer, await log_in(viewer, *VIEWER)


async def audit_rows(pool: asyncpg.Pool, action: str) -> list[tuple[Any, ...]]:
    rows = await pool.fetch(
        "SELECT username, target, outcome, detail FROM audit_log WHERE action = $1 ORDER BY id", action
    )
    return [(row["username"], row["target"], row["outcome"], row["detail"]) for row in rows]


async def shown_holds(ops: httpx.AsyncClient, *, holding: int, decided: int = 0) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        storms: dict[str, Any] = (await dashboard(ops))["storms"]
        return storms if len(storms["holding"]) == holding and len(storms["decided"]) == decided else None

    result: dict[str, Any] = await eventually(check, timeout=10)
    return result


async def test_held_storm_is_shown_live_and_released_by_an_admin_audited(
    ops: httpx.AsyncClient, ingest: IngestStandIn, pool: asyncpg.Pool, unique: str
) -> None:
    agency = f"jail-{unique}"
    csrf = await log_in(ops, *ADMIN)
    assert "No storm held." in (await ops.get("/partials/live")).text

    ingest.add_hold(storm_hold("h-1", agency, held=412))  # opened while the page is open
    storms = await shown_holds(ops, holding=1)
    (hold,) = storms["holding"]
    assert (hold["hold_id"], hold["agency_id"], hold["held_changes"], hold["urgent_changes"]) == (
        "h-1",
        agency,
        412,
        410,
    )
    assert hold["by_status"] == {"released": 410, "in_custody": 2}
    assert [sample["agency_record_id"] for sample in hold["samples"]] == ["rec-0", "rec-1", "rec-2"]
    live = (await ops.get("/partials/live")).text
    assert 'data-hold-id="h-1"' in live
    assert "412 releases in 10 minutes" in live
    assert "SAMPLE, PERSON 2" in live
    assert 'action="/actions/storm-holds/h-1/release"' in live
    assert 'action="/actions/storm-holds/h-1/discard"' in live
    assert [r.query for r in ingest.sent("GET", "/v1/admin/storm-holds")][:2] == [{"state": "holding"}, {}]
    assert (await ops.get("/api/storm-holds", params={"state": "holding"})).json()[0]["hold_id"] == "h-1"
    assert (await ops.get("/api/storm-holds/h-1")).json()["state"] == "holding"
    assert (await ops.get("/api/storm-holds/nope")).status_code == 404
    assert (await ops.get("/api/storm-holds", params={"state": "open"})).status_code == 422
    metrics = (await ops.get("/metrics")).text
    assert "cw_ops_storm_holds_open 1.0" in metrics
    assert f'cw_ops_storm_held_changes{{agency="{agency}"}} 412.0' in metrics

    # Without the CSRF token nothing reaches ingest.
    assert (await ops.post("/actions/storm-holds/h-1/release")).status_code == 403
    assert ingest.sent("POST", r".*/release") == []

    released = await ops.post("/actions/storm-holds/h-1/release", data={"csrf_token": csrf}, headers=HTML)
    assert released.status_code == 200, released.text
    assert "412 held changes are published in feed order" in released.text
    (sent,) = ingest.sent("POST", "/v1/admin/storm-holds/h-1/release")
    assert sent.body == {"operator": ADMIN[0]}
    storms = (await dashboard(ops))["storms"]  # refreshed at once, no wait for the next poll
    assert storms["holding"] == []
    assert [(h["hold_id"], h["state"], h["decided_by"]) for h in storms["decided"]] == [("h-1", "released", ADMIN[0])]
    page = (await ops.get("/")).text
    assert 'class="decided-released" data-hold-id="h-1"' in page
    assert 'action="/actions/storm-holds/h-1/release"' not in page

    again = await ops.post("/actions/storm-holds/h-1/release", data={"csrf_token": csrf})
    assert again.status_code == 409
    assert again.json() == {"ok": False, "message": "Not released: storm hold h-1 was already released"}
    missing = await ops.post("/actions/storm-holds/h-9/release", data={"csrf_token": csrf}, headers=HTML)
    assert missing.status_code == 404
    assert "Not released: no such storm hold" in missing.text
    rows = await audit_rows(pool, "release_storm_hold")
    assert [(user, target, outcome) for user, target, outcome, _ in rows] == [
        (ADMIN[0], "h-1", "ok"),
        (ADMIN[0], "h-1", "refused"),
        (ADMIN[0], "h-9", "refused"),
    ]
    assert rows[0][3] == {"agency_id": agency, "held_changes": 412, "urgent_changes": 410, "state": "released"}
    assert "release_storm_hold" in (await ops.get("/audit")).text
    assert "cw_ops_storm_holds_open 0.0" in (await ops.get("/metrics")).text


async def test_discard_needs_a_reason_and_viewers_see_but_cannot_decide(
    ops: httpx.AsyncClient, ingest: IngestStandIn, pool: asyncpg.Pool, unique: str
) -> None:
    agency = f"jail-{unique}"
    ingest.add_hold(storm_hold("h-2", agency, held=80))
    csrf = await log_in(ops, *ADMIN)
    await shown_holds(ops, holding=1)

    async with viewer_client(ops) as (viewer, viewer_csrf):
        page = (await viewer.get("/")).text
        assert 'data-hold-id="h-2"' in page
        assert "/actions/storm-holds/" not in page
        refused = await viewer.post("/actions/storm-holds/h-2/discard", data={"csrf_token": viewer_csrf, "reason": "x"})
        assert refused.status_code == 403
        assert (
            await viewer.post("/actions/storm-holds/h-2/release", data={"csrf_token": viewer_csrf})
        ).status_code == 403
    assert ingest.sent("POST", r"/v1/admin/storm-holds/.*") == []

    no_reason = await ops.post("/actions/storm-holds/h-2/discard", data={"csrf_token": csrf, "reason": "  "})
    assert no_reason.status_code == 422
    assert no_reason.json()["message"] == "Not discarded: give a reason for discarding the held changes."
    assert ingest.sent("POST", r".*/discard") == []

    ingest.refuse_next = httpx.Response(
        422, json={"detail": [{"loc": ["body", "reason"], "msg": "String should have at most 500 characters"}]}
    )
    refused = await ops.post("/actions/storm-holds/h-2/discard", data={"csrf_token": csrf, "reason": "bad batch"})
    assert refused.status_code == 422
    assert refused.json()["message"] == "Not discarded: reason: String should have at most 500 characters"

    reason = "vendor maintenance rewrote every booking; agency confirmed"
    discarded = await ops.post("/actions/storm-holds/h-2/discard", data={"csrf_token": csrf, "reason": reason})
    assert discarded.status_code == 200, discarded.text
    assert "none of its 80 held changes is published" in discarded.json()["message"]
    assert ingest.sent("POST", "/v1/admin/storm-holds/h-2/discard")[-1].body == {"operator": ADMIN[0], "reason": reason}
    decided = (await dashboard(ops))["storms"]["decided"]
    assert [(h["state"], h["decision_reason"]) for h in decided] == [("discarded", reason)]
    assert reason in (await ops.get("/partials/live")).text

    rows = await audit_rows(pool, "discard_storm_hold")
    assert [(user, outcome) for user, _, outcome, _ in rows] == [
        (VIEWER[0], "forbidden"),
        (ADMIN[0], "refused"),
        (ADMIN[0], "ok"),
    ]
    assert rows[2][3]["reason"] == reason
    assert (await audit_rows(pool, "release_storm_hold"))[0][:3] == (VIEWER[0], "h-2", "forbidden")


async def test_ingest_unreachable_is_shown_never_a_500(
    ops: httpx.AsyncClient, ingest: IngestStandIn, pool: asyncpg.Pool
) -> None:
    ingest.add_hold(storm_hold("h-3", "county-jail"))
    csrf = await log_in(ops, *ADMIN)
    await shown_holds(ops, holding=1)
    ingest.down = True

    async def error_shown() -> str | None:
        error: str | None = (await dashboard(ops))["storms"]["error"]
        return error

    assert await eventually(error_shown) == "ingest unreachable: ConnectError"
    live = (await ops.get("/partials/live")).text
    assert "Storm holds unavailable: ingest unreachable: ConnectError" in live
    assert 'data-hold-id="h-3"' in live  # the last known holds stay on screen
    assert (await ops.get("/api/storm-holds")).status_code == 502
    released = await ops.post("/actions/storm-holds/h-3/release", data={"csrf_token": csrf}, headers=HTML)
    assert released.status_code == 502
    assert "Not released: ingest unreachable" in released.text
    overrides = await ops.get("/overrides", params={"agency_id": "county-jail"})
    assert overrides.status_code == 200
    assert "Agencies unavailable: ingest unreachable" in overrides.text
    assert (await audit_rows(pool, "release_storm_hold"))[0][2] == "failed"

    ingest.down, ingest.time_out = False, True
    slow = await ops.post("/actions/storm-holds/h-3/release", data={"csrf_token": csrf})
    assert slow.status_code == 502
    assert "ingest did not answer in time (ReadTimeout); the request may still take effect" in slow.json()["message"]
    ingest.time_out = False
    await eventually(lambda: _no_error(ops))


async def _no_error(ops: httpx.AsyncClient) -> bool:
    return (await dashboard(ops))["storms"]["error"] is None


async def test_storm_held_alert_is_shown_with_a_link_to_the_holds(
    ops: httpx.AsyncClient, kafka_settings: KafkaSettings, unique: str
) -> None:
    await log_in(ops, *ADMIN)
    alert = OpsAlert(kind="storm_held", agency_id=f"jail-{unique}", message="412 releases held", at=datetime.now(UTC))
    event = new_event(alert, source="custodywatch/ingest", subject=alert.agency_id)
    await produce_raw(kafka_settings, kafka_settings.topic(OPS_ALERT.name), [(None, encode(event))])

    async def alerted() -> bool:
        return any(a["kind"] == "storm_held" for a in (await dashboard(ops))["alerts"])

    await eventually(alerted)
    live = (await ops.get("/partials/live")).text
    assert 'class="alert-storm_held"' in live
    assert '<a href="#storm-holds">see held storms</a>' in live


def override_form(csrf: str, agency: str, **changes: str) -> dict[str, str]:
    return {
        "csrf_token": csrf,
        "agency_id": agency,
        "identifier_kind": "booking_number",
        "identifier": "B-2026-0042",
        "status": "released",
        "effective_local": "2026-11-27T09:30",
        "utc_offset": "",
        "release_reason": "bond",
        "transfer_destination": "",
        "facility": "Main Jail",
        "name": "",
        "reason": "feed down since noon; release confirmed by the jail by phone",
    } | changes


async def test_override_goes_to_ingest_per_contract_and_says_what_happened(
    ops: httpx.AsyncClient, ingest: IngestStandIn, pool: asyncpg.Pool, unique: str
) -> None:
    agency = f"jail-{unique}"
    ingest.add_agency(agency, timezone="America/Chicago")
    csrf = await log_in(ops, *ADMIN)
    page = await ops.get("/overrides")
    assert page.status_code == 200
    assert f'<option value="{agency}"' in page.text
    assert "America/Chicago" in page.text
    assert 'name="effective_local"' in page.text

    accepted = await ops.post("/actions/overrides", data=override_form(csrf, agency), headers=HTML)
    assert accepted.status_code == 201, accepted.text
    assert "accepted: notices go out to the subject&#39;s subscribers" in accepted.text
    (sent,) = ingest.sent("POST", f"/v1/admin/agencies/{agency}/overrides")
    assert sent.body == {
        "person_number": None,
        "booking_number": "B-2026-0042",
        "case_numbers": [],
        "status": "released",
        "effective_at": "2026-11-27T09:30:00-06:00",
        "release_reason": "bond",
        "transfer_destination": None,
        "facility": "Main Jail",
        "name": None,
        "operator": ADMIN[0],
        "reason": "feed down since noon; release confirmed by the jail by phone",
    }
    assert 'data-override-id="ovr-1"' in accepted.text  # listed under the agency's recent overrides

    duplicate = await ops.post("/actions/overrides", data=override_form(csrf, agency))
    assert duplicate.status_code == 201
    assert duplicate.json()["ok"] is False
    assert duplicate.json()["override"]["result"] == "duplicate"
    assert "duplicate: the subject already has this status; no notice" in duplicate.json()["message"]
    stale = await ops.post(
        "/actions/overrides",
        data=override_form(
            csrf,
            agency,
            status="in_custody",
            release_reason="",
            utc_offset="+00:00",
            effective_local="2026-11-27T08:00",
        ),
    )
    assert stale.json()["override"]["result"] == "stale"
    assert "stale: older than the subject's newest record; no notice" in stale.json()["message"]

    listed = (await ops.get(f"/api/agencies/{agency}/overrides")).json()
    assert [o["result"] for o in listed] == ["stale", "duplicate", "accepted"]
    assert (await ops.get("/api/agencies/nowhere/overrides")).status_code == 404
    assert [a["agency_id"] for a in (await ops.get("/api/agencies")).json()] == [agency]
    shown = (await ops.get("/overrides", params={"agency_id": agency})).text
    assert shown.count("data-override-id=") == 3

    rows = await audit_rows(pool, "override_status")
    assert [(user, target, outcome, detail["result"]) for user, target, outcome, detail in rows] == [
        (ADMIN[0], agency, "ok", "accepted"),
        (ADMIN[0], agency, "ok", "duplicate"),
        (ADMIN[0], agency, "ok", "stale"),
    ]
    assert rows[0][3]["booking_number"] == "B-2026-0042"
    assert rows[0][3]["event_id"] == "evt-1"
    assert 'cw_ops_overrides_total{result="accepted"} 1.0' in (await ops.get("/metrics")).text


async def test_override_mistakes_are_explained_in_plain_words(
    ops: httpx.AsyncClient, ingest: IngestStandIn, pool: asyncpg.Pool, unique: str
) -> None:
    agency = f"jail-{unique}"
    ingest.add_agency(agency, timezone="America/Chicago")
    csrf = await log_in(ops, *ADMIN)
    in_an_hour = (datetime.now(ZoneInfo("America/Chicago")) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    cases: list[tuple[dict[str, str], int, str]] = [
        ({"identifier": " "}, 422, "give the booking, person or case number"),
        ({"reason": ""}, 422, "give the reason for the override"),
        ({"status": "vanished"}, 422, "status: Input should be"),
        ({"identifier_kind": "ssn"}, 422, "identifier kind: Input should be"),
        ({"status": "escaped"}, 422, "a release reason goes only with the status &#39;released&#39;"),
        ({"effective_local": "yesterday"}, 422, "is not a date and time like 2026-11-27T14:30"),
        ({"effective_local": "2026-11-01T01:30"}, 422, "happens twice or never in America/Chicago"),
        ({"effective_local": in_an_hour}, 422, "is in the future"),
        ({"utc_offset": "CST"}, 422, "UTC offset &#39;CST&#39; is not like +05:30"),
        ({"agency_id": "nowhere"}, 404, "Not sent: no agency &#39;nowhere&#39;"),
    ]
    for changes, status_code, message in cases:
        answer = await ops.post("/actions/overrides", data=override_form(csrf, agency, **changes), headers=HTML)
        assert (answer.status_code, message in answer.text) == (status_code, True), (changes, answer.text)
        assert 'value="feed down since noon' in answer.text or changes.get("reason") == ""  # the form is kept
    assert ingest.sent("POST", r".*/overrides") == []

    ingest.refuse_next = httpx.Response(
        422,
        json={"detail": [{"loc": ["body", "effective_at"], "msg": "Value error, before the agency existed"}]},
    )
    refused = await ops.post("/actions/overrides", data=override_form(csrf, agency))
    assert refused.status_code == 422
    assert refused.json()["message"] == "Not recorded by ingest: effective time: before the agency existed"
    rows = await audit_rows(pool, "override_status")
    assert [(outcome, detail["why"]) for _, _, outcome, detail in rows] == [
        ("refused", "effective time: before the agency existed")
    ]

    async with viewer_client(ops) as (viewer, viewer_csrf):
        page = (await viewer.get("/overrides", params={"agency_id": agency})).text
        assert 'action="/actions/overrides"' not in page
        assert "Recent overrides of" in page
        refused = await viewer.post("/actions/overrides", data=override_form(viewer_csrf, agency))
        assert refused.status_code == 403
    assert len(ingest.sent("POST", r".*/overrides")) == 1
    assert (await ops.post("/actions/overrides", data=override_form("wrong", agency))).status_code == 403


async def test_admin_blocks_a_pending_notice_at_delivery_audited(
    ops: httpx.AsyncClient,
    delivery: DeliveryStandIn,
    kafka_settings: KafkaSettings,
    pool: asyncpg.Pool,
    unique: str,
) -> None:
    pending, done = f"n-pending-{unique}", f"n-done-{unique}"
    now = datetime.now(UTC)
    await produce_statuses(
        kafka_settings,
        [
            status_event(pending, DeliveryStatus.CREATED, provider="local", at=now),
            status_event(done, DeliveryStatus.TEMPORARY_FAILURE, provider="local", at=now, error_code="30003"),
        ],
    )
    delivery.add_notice(pending)
    delivery.add_notice(done, status="delivered", outcome="delivered")
    csrf = await log_in(ops, *ADMIN)

    async def seen() -> bool:
        return (await ops.get(f"/api/notifications/{done}")).status_code == 200

    await eventually(seen)
    page = (await ops.get(f"/notifications/{pending}")).text
    assert f'action="/actions/notifications/{pending}/block"' in page

    no_reason = await ops.post(f"/actions/notifications/{pending}/block", data={"csrf_token": csrf, "reason": ""})
    assert no_reason.status_code == 422
    assert delivery.sent("POST", ".*") == []  # a refused block never reaches delivery

    reason = "victim reached by phone; the advocate asked us to hold this message"
    blocked = await ops.post(
        f"/actions/notifications/{pending}/block", data={"csrf_token": csrf, "reason": reason}, headers=HTML
    )
    assert blocked.status_code == 200, blocked.text
    assert f"Blocked notice {pending}: no further attempts." in blocked.text
    assert f'href="/notifications/{pending}"' in blocked.text
    (sent,) = delivery.sent("POST", f"/v1/notifications/{pending}/stop")
    assert sent.body is None
    assert delivery.notices[pending]["outcome"] == "stopped"
    detail = (await ops.get(f"/api/notifications/{pending}")).json()
    assert [(b["username"], b["outcome"], b["reason"]) for b in detail["blocks"]] == [(ADMIN[0], "ok", reason)]
    assert reason in (await ops.get(f"/notifications/{pending}")).text

    ended = await ops.post(f"/actions/notifications/{done}/block", data={"csrf_token": csrf, "reason": "too late"})
    assert ended.status_code == 409
    assert ended.json()["message"] == f"Not blocked: notice {done} had already ended (delivered)."
    unknown = await ops.post("/actions/notifications/n-unknown/block", data={"csrf_token": csrf, "reason": "x"})
    assert unknown.status_code == 404
    assert unknown.json()["message"] == "Not blocked: no such notification"
    delivery.down = True
    down = await ops.post(f"/actions/notifications/{pending}/block", data={"csrf_token": csrf, "reason": "again"})
    assert (down.status_code, down.json()["message"]) == (502, "Not blocked: delivery unreachable: ConnectError")
    delivery.down = False

    async with viewer_client(ops) as (viewer, viewer_csrf):
        assert "/block" not in (await viewer.get(f"/notifications/{pending}")).text
        refused = await viewer.post(
            f"/actions/notifications/{pending}/block", data={"csrf_token": viewer_csrf, "reason": "x"}
        )
        assert refused.status_code == 403
    rows = await audit_rows(pool, "block_notice")
    assert [(user, target, outcome) for user, target, outcome, _ in rows] == [
        (ADMIN[0], pending, "ok"),
        (ADMIN[0], done, "refused"),
        (ADMIN[0], "n-unknown", "refused"),
        (ADMIN[0], pending, "failed"),
        (VIEWER[0], pending, "forbidden"),
    ]


async def test_a_voice_notice_shows_its_calls_who_answered_and_the_pin_like_any_other_notice(
    ops: httpx.AsyncClient, delivery: DeliveryStandIn, kafka_settings: KafkaSettings, unique: str
) -> None:
    """A machine took the first call, the line was busy at the repeat, a person keyed in the PIN on the third."""
    notice, text = f"n-voice-{unique}", f"n-text-{unique}"
    first = datetime.now(UTC) - timedelta(hours=3)
    busy, answered = first + timedelta(hours=2), first + timedelta(hours=2, minutes=30)

    def call(status: DeliveryStatus, at: datetime, attempt: int = 1, error_code: str | None = None) -> bytes:
        return status_event(
            notice,
            status,
            provider="twilio-voice",
            at=at,
            attempt=attempt,
            error_code=error_code,
            channel=Channel.VOICE,
        )

    await produce_statuses(
        kafka_settings,
        [
            call(DeliveryStatus.CREATED, first - timedelta(seconds=2)),
            call(DeliveryStatus.SENDING, first),
            call(DeliveryStatus.SENT, first + timedelta(seconds=20)),
            call(DeliveryStatus.DELIVERED, first + timedelta(minutes=1)),
            call(DeliveryStatus.TEMPORARY_FAILURE, busy, 2, "busy"),
            call(DeliveryStatus.SENDING, answered, attempt=3),
            call(DeliveryStatus.SENT, answered + timedelta(seconds=15), attempt=3),
            call(DeliveryStatus.DELIVERED, answered + timedelta(minutes=2), attempt=3),
            status_event(text, DeliveryStatus.DELIVERED, provider="local", at=first),
        ],
    )
    delivery.add_notice(
        notice,
        status="delivered",
        outcome="acknowledged",
        channel="voice",
        attempts=[
            call_attempt(1, "delivered", at=first, answered_by="machine_start"),
            call_attempt(2, "temporary-failure", at=busy, error_code="busy", minutes=0.5),
            call_attempt(3, "delivered", at=answered, answered_by="human", minutes=2),
        ],
        acknowledged_at=answered + timedelta(minutes=1),
    )
    await log_in(ops, *ADMIN)

    async def seen() -> dict[str, Any] | None:
        detail = await ops.get(f"/api/notifications/{notice}")
        found = detail.json() if detail.status_code == 200 else None
        text_seen = (await ops.get(f"/api/notifications/{text}")).status_code == 200
        return found if found and len(found["history"]) == 8 and text_seen else None

    detail = await eventually(seen)
    assert detail["notification"]["channel"] == "voice"
    assert [(h["status"], h["attempt"], h["call_status"], h["answered_by"]) for h in detail["history"]] == [
        ("created", 1, None, None),
        ("sending", 1, "queued or ringing", None),
        ("sent", 1, "in progress", None),
        ("delivered", 1, "completed", "machine_start"),
        ("temporary-failure", 2, "busy", None),
        ("sending", 3, "queued or ringing", None),
        ("sent", 3, "in progress", None),
        ("delivered", 3, "completed", "human"),
    ]
    assert detail["acknowledged"]["how"] == "PIN on call attempt 3"
    assert detail["delivery_error"] is None

    page = (await ops.get(f"/notifications/{notice}", headers=HTML)).text
    assert "by PIN on call attempt 3 · repeats stopped" in page
    assert '<td class="answered-by">machine_start</td>' in page
    assert '<td class="call-status">busy</td>' in page
    assert "+1•••••••67" in page
    text_page = (await ops.get(f"/notifications/{text}", headers=HTML)).text
    assert "Answered by" not in text_page  # a text has no calls

    counts = {(row["channel"], row["provider"]): row for row in (await dashboard(ops))["delivery"]["last_day"]}
    calls = counts[("voice", "twilio-voice")]
    assert (calls["delivered"], calls["failed"], calls["by_status"]["sent"]) == (2, 1, 2)
    newest = {n["notification_id"]: n for n in (await dashboard(ops))["delivery"]["newest_notifications"]}
    assert (newest[notice]["channel"], newest[notice]["status"], newest[notice]["attempt"]) == ("voice", "delivered", 3)

    delivery.down = True  # the history ops saw still shows; what only delivery knows is said to be missing
    page = (await ops.get(f"/notifications/{notice}", headers=HTML)).text
    assert 'id="delivery-error"' in page
    assert '<td class="call-status">busy</td>' in page


async def test_admin_actions_are_rate_limited_per_operator(
    ops: httpx.AsyncClient, ingest: IngestStandIn, pool: asyncpg.Pool, guard_settings: OpsSettings
) -> None:
    csrf = await log_in(ops, *ADMIN)
    limit = guard_settings.admin_action_limit
    for _ in range(limit):
        answer = await ops.post("/actions/storm-holds/h-none/release", data={"csrf_token": csrf})
        assert answer.status_code == 404
    limited = await ops.post("/actions/storm-holds/h-none/release", data={"csrf_token": csrf}, headers=HTML)
    assert limited.status_code == 429
    assert f"too many admin actions: at most {limit} in 60 s" in limited.text
    assert len(ingest.sent("POST", r".*/release")) == limit
    outcomes = [outcome for _, _, outcome, _ in await audit_rows(pool, "release_storm_hold")]
    assert outcomes == ["refused"] * limit + ["rate_limited"]
    async with viewer_client(ops) as (
        viewer,
        viewer_csrf,
    ):  # another operator has a budget of their own (and is refused as a viewer)
        assert (
            await viewer.post("/actions/storm-holds/h-none/release", data={"csrf_token": viewer_csrf})
        ).status_code == 403


# An agency's contacts and referrals (services/ops/resources.py)

AGENCY_RESOURCES = {
    "contacts": [{"role": "hotline", "name": "Victim line", "phone": "+15125550100", "languages": ["en", "es"]}],
    "referrals": [{"name": "Safe House", "category": "shelter", "url": "https://safe.example/"}],
}


async def test_an_admin_replaces_resources_audited_and_a_viewer_cannot(
    ops: httpx.AsyncClient, ingest: IngestStandIn, pool: asyncpg.Pool, unique: str
) -> None:
    agency = f"jail-{unique}"
    ingest.add_agency(agency)
    csrf = await log_in(ops, *ADMIN)
    page = await ops.get("/resources", params={"agency_id": agency})
    assert page.status_code == 200
    assert 'name="resources"' in page.text

    form = {"csrf_token": csrf, "agency_id": agency, "resources": json.dumps(AGENCY_RESOURCES)}
    assert (await ops.post("/actions/resources", data=form | {"csrf_token": "forged"}, headers=HTML)).status_code == 403
    saved = await ops.post("/actions/resources", data=form, headers=HTML)
    assert saved.status_code == 200, saved.text
    assert "Saved 1 contacts and 1 referrals" in saved.text
    (sent,) = ingest.sent("PUT", f"/v1/admin/agencies/{agency}/resources")
    assert sent.body["contacts"][0]["name"] == "Victim line"
    assert "Victim line" in (await ops.get("/resources", params={"agency_id": agency})).text

    not_json = await ops.post("/actions/resources", data=form | {"resources": "{nope"}, headers=HTML)
    assert not_json.status_code == 422
    assert "not JSON" in not_json.text
    bad_role = {"contacts": [{"role": "sheriff", "name": "X"}]}
    refused = await ops.post("/actions/resources", data=form | {"resources": json.dumps(bad_role)}, headers=HTML)
    assert refused.status_code == 422
    assert "Not saved by ingest" in refused.text

    async with viewer_client(ops) as (viewer, viewer_csrf):
        shown = await viewer.get("/resources", params={"agency_id": agency})
        assert "readonly" in shown.text
        forbidden = await viewer.post("/actions/resources", data=form | {"csrf_token": viewer_csrf}, headers=HTML)
        assert forbidden.status_code == 403
    outcomes = [(row[1], row[2]) for row in await audit_rows(pool, "replace_resources")]
    assert outcomes == [(agency, "ok"), (agency, "refused"), (agency, "forbidden")]
