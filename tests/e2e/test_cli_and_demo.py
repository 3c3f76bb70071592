"""The ``custody-watch`` CLI and the ``make demo`` story.

The pure parts (reading and batching feed files, idempotency keys, what is printed, retries) are unit tests; the
commands and the story then run against the session's whole system, through public APIs only."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from cli import feeds, output
from cli.__main__ import app
from cli.client import Api, CliError
from cli.commands.feed import EXIT_REJECTED, push_json
from devservers.demo import play_story, wait_for_agency
from devservers.driver import SystemDriver, custody_record
from devservers.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
CLEAR_CONTACT = re.compile(r"\+\d{8,}|[\w.-]+@[\w-]+\.\w+")


def record(record_id: str, status_code: str = "BOOKED", **fields: Any) -> dict[str, Any]:
    return custody_record(record_id, f"CR-{record_id}", status_code, **fields)


# --- feed files -----------------------------------------------------------------------------------------------


def test_reads_an_array_or_the_api_s_own_shape(tmp_path: Path) -> None:
    records = [record("a"), record("b")]
    as_array, as_object = tmp_path / "array.json", tmp_path / "object.json"
    as_array.write_text(json.dumps(records))
    as_object.write_text("\ufeff" + json.dumps({"records": records}), encoding="utf-8")  # a BOM, as some exports write
    assert feeds.read_records(as_array) == records
    assert feeds.read_records(as_object) == records


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON"),
        ('{"rows": []}', "expected a JSON array"),
        ('"records"', "expected a JSON array"),
        ('[{"record_id": "a"}, 3]', "record 1 is not a JSON object"),
    ],
)
def test_unreadable_feed_files_are_explained(text: str, message: str) -> None:
    with pytest.raises(feeds.FeedFileError, match=message):
        feeds.parse_records(text)


@pytest.mark.parametrize(("count", "size"), [(0, 3), (1, 3), (7, 3), (9, 3), (1000, 1000), (1001, 1000)])
def test_batches_keep_every_record_once_in_file_order(count: int, size: int) -> None:
    records = [{"record_id": str(n)} for n in range(count)]
    cut = list(feeds.batches(records, size))
    assert [r for _, batch in cut for r in batch] == records
    assert all(1 <= len(batch) <= size for _, batch in cut)
    assert [offset for offset, _ in cut] == list(range(0, count, size))
    with pytest.raises(ValueError, match="at least 1"):
        list(feeds.batches(records, 0))


def test_idempotency_keys_repeat_for_the_same_cut_of_the_same_file() -> None:
    digest, other = "a" * 64, "b" * 64
    key = feeds.idempotency_key(digest, 1000, 3)
    assert key == feeds.idempotency_key(digest, 1000, 3)
    distinct = {
        key,
        feeds.idempotency_key(digest, 1000, 4),
        feeds.idempotency_key(digest, 500, 3),
        feeds.idempotency_key(other, 1000, 3),
    }
    assert len(distinct) == 4
    assert len(key) <= 200  # the service's limit on Idempotency-Key


def test_counts_csv_rows_as_the_service_does(tmp_path: Path) -> None:
    path = tmp_path / "feed.csv"
    path.write_text('record_id,name\nr1,"Doe,\nJane"\n\n , \nr2,Roe\n')
    assert feeds.count_csv_rows(path) == 2
    assert b"".join(feeds.file_chunks(path, chunk_bytes=4)) == path.read_bytes()


def test_summary_adds_batches_and_places_rejections_in_the_file() -> None:
    summary = feeds.PushSummary()
    summary.add_batch(0, {"summary": {"accepted": 2, "rejected": 0}, "results": [{"index": 0, "result": "accepted"}]})
    summary.add_batch(
        1000,
        {
            "summary": {"accepted": 1, "duplicate": 1, "rejected": 1},
            "results": [{"index": 7, "record_id": "r-1007", "result": "rejected", "reason": "unknown status code"}],
        },
    )
    assert summary.counts == {"accepted": 3, "rejected": 1, "duplicate": 1}
    assert (summary.total, summary.rejected, summary.batches) == (5, 1, 2)
    assert output.summary_line(summary) == "accepted 3 · duplicate 1 · stale 0 · rejected 1"
    summary.add_batch(2000, {"summary": {"accepted": 0, "sealed": 2, "stale": 0}, "results": []})
    assert output.summary_line(summary) == "accepted 3 · duplicate 1 · stale 0 · sealed 2 · rejected 1"
    assert output.rejection_lines(summary, csv=False) == ["  record 1007 (r-1007): unknown status code"]


def test_a_csv_job_summary_lists_its_first_rejected_rows() -> None:
    summary = feeds.PushSummary()
    summary.add_job(
        {
            "summary": {"accepted": 10, "rejected": 12},
            "rows_rejected": 12,
            "errors": [{"row": n, "record_id": None, "reason": "bad"} for n in range(1, 11)],
        }
    )
    lines = output.rejection_lines(summary, csv=True)
    assert lines[0] == "  row 1: bad"
    assert lines[-1] == "  … and 2 more"
    assert len(lines) == 11


# --- delivery lines -------------------------------------------------------------------------------------------


def notification(notification_id: str, status: str, **fields: Any) -> dict[str, Any]:
    return {
        "notification_id": notification_id,
        "kind": "status_change",
        "channel": "sms",
        "contact": "+1••••••••67",
        "status": status,
        "attempt_count": 1,
        "updated_at": "2026-11-27T19:00:00+00:00",
        "attempts": [{"provider": "local-sms", "error_code": None, "detail": None}],
        **fields,
    }


def test_tail_prints_new_and_changed_notifications_oldest_first() -> None:
    seen: dict[str, tuple[Any, ...]] = {}
    newest_first = [notification("n2", "sending"), notification("n1", "delivered")]
    assert [n["notification_id"] for n in output.changed_notifications(newest_first, seen)] == ["n1", "n2"]
    assert output.changed_notifications(newest_first, seen) == []
    later = [notification("n2", "delivered", updated_at="2026-11-27T19:00:05+00:00"), newest_first[1]]
    assert [n["notification_id"] for n in output.changed_notifications(later, seen)] == ["n2"]


def test_a_notification_line_never_shows_a_contact_in_clear() -> None:
    failed = notification(
        "n1",
        "permanent-failure",
        contact="+15551234567",
        attempts=[{"provider": "local-sms", "error_code": "21211", "detail": "invalid number"}],
    )
    line = output.notification_line(failed)
    assert "5551234" not in line
    assert "+1••••••••67" in line
    assert line.split()[2:] == ["n1", "status_change", "sms", "+1••••••••67", "permanent-failure", "local-sms", "21211"]
    assert "j•••@e•••.org" in output.notification_line(notification("n2", "sent", contact="jane@example.org"))
    assert output.masked_contact(None) == "-"


# --- HTTP: refusals and retries -------------------------------------------------------------------------------


def api(handler: Any) -> Api:
    return Api(
        "http://ingest.test",
        "cwk_test",
        credential="API key",
        setting="--api-key",
        transport=httpx.MockTransport(handler),
        sleep=lambda _: None,
    )


def test_refusals_read_as_sentences() -> None:
    answers = {
        "/401": httpx.Response(401, json={"detail": "invalid or revoked API key"}),
        "/422": httpx.Response(422, json={"detail": [{"loc": ["body", "name"], "msg": "Field required"}]}),
        "/500": httpx.Response(500, text="boom"),
    }
    with api(lambda request: answers[request.url.path]) as client:
        with pytest.raises(CliError, match=r"the API key was refused \(401\): invalid or revoked API key"):
            client.request("GET", "/401")
        with pytest.raises(CliError, match=r"refused as invalid \(422\): name: Field required"):
            client.request("GET", "/422")
        with pytest.raises(CliError, match="the service answered 500: boom"):
            client.request("GET", "/500")


def test_a_re_run_push_sends_the_same_keys_so_nothing_is_applied_twice(tmp_path: Path) -> None:
    path = tmp_path / "feed.json"
    path.write_text(json.dumps([record(f"r{n}") for n in range(5)]))
    sent: list[str] = []
    outage = {"on": True}

    def ingest(request: httpx.Request) -> httpx.Response:
        key = request.headers["Idempotency-Key"]
        sent.append(key)
        batch = json.loads(request.content)["records"]
        if outage["on"] and batch[0]["record_id"] == "r4":
            return httpx.Response(503, json={"detail": "unavailable"})
        return httpx.Response(200, json={"summary": {"accepted": len(batch)}, "results": []})

    with api(ingest) as client, pytest.raises(CliError, match=r"batch 3 of 3 \(records 4-4\): .*503.*again is safe"):
        push_json(client, "agency", path, batch_size=2)
    first = list(dict.fromkeys(sent))
    assert len(first) == 3  # batches r0-r1, r2-r3, then r4 retried until giving up
    assert sent.count(first[2]) > 1
    sent.clear()
    outage["on"] = False
    with api(ingest) as client:
        summary = push_json(client, "agency", path, batch_size=2)
    assert sent == first
    assert summary.counts == {"accepted": 5}


def test_an_unreachable_service_is_named() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with api(refuse) as client, pytest.raises(CliError, match=r"cannot reach http://ingest.test .*system running"):
        client.request("GET", "/v1/admin/agencies")


# --- against the running system -------------------------------------------------------------------------------


def cli_env(stack: Stack, api_key: str = "") -> dict[str, str | None]:
    return {
        "CUSTODY_WATCH_INGEST_URL": stack.url("ingest"),
        "CUSTODY_WATCH_DELIVERY_URL": stack.url("delivery"),
        "CUSTODY_WATCH_ADMIN_TOKEN": stack.secrets["ADMIN_TOKEN"],
        "CUSTODY_WATCH_OPERATOR_TOKEN": stack.secrets["OPERATOR_TOKEN"],
        "CUSTODY_WATCH_API_KEY": api_key or None,
    }


def invoke(stack: Stack, *args: str, api_key: str = "") -> Any:
    return CliRunner(env=cli_env(stack, api_key)).invoke(app, list(args))


def new_agency(stack: Stack, agency: str) -> str:
    created = invoke(stack, "agency", "create", agency, "--name", "CLI Test Jail", "--timezone", "America/Chicago")
    assert created.exit_code == 0, created.output
    assert f"created agency {agency}" in created.stdout
    key = invoke(stack, "agency", "key", "create", agency, "--label", "cli test")
    assert key.exit_code == 0, key.output
    assert key.stdout.strip().startswith("cwk_")
    assert "shown only now" in key.stderr
    return str(key.stdout.strip())


@pytest.mark.e2e
@pytest.mark.integration
def test_cli_manages_an_agency_and_pushes_json_and_csv(stack: Stack, tmp_path: Path) -> None:
    agency = f"cli-{uuid.uuid4().hex[:6]}"
    key = new_agency(stack, agency)
    again = invoke(stack, "agency", "create", agency, "--name", "Again", "--timezone", "America/Chicago")
    assert again.exit_code == 1
    assert "already exists" in again.stderr
    listed = invoke(stack, "agency", "list")
    assert listed.exit_code == 0, listed.output
    assert any(line.split()[:1] == [agency] for line in listed.stdout.splitlines())

    feed = tmp_path / "feed.json"
    records = [record(f"{agency}-{n}") for n in range(5)]
    records[3]["status_code"] = "NOT-A-CODE"
    feed.write_text(json.dumps({"records": records}))
    pushed = invoke(stack, "feed", "push", agency, str(feed), "--batch-size", "2", api_key=key)
    assert pushed.exit_code == EXIT_REJECTED, pushed.output
    assert "5 records · accepted 4 · duplicate 0 · stale 0 · rejected 1" in pushed.stdout
    assert f"record 3 ({agency}-3): unknown status code 'NOT-A-CODE'" in pushed.stdout
    # The same push again is answered from the first answers (same Idempotency-Keys), not applied as duplicates.
    repeated = invoke(stack, "feed", "push", agency, str(feed), "--batch-size", "2", api_key=key)
    assert repeated.stdout == pushed.stdout
    # Cut differently, the records are new requests: the service recognises them as duplicates.
    recut = invoke(stack, "feed", "push", agency, str(feed), "--batch-size", "3", api_key=key)
    assert "accepted 0 · duplicate 4 · stale 0 · rejected 1" in recut.stdout

    csv_file = tmp_path / "feed.csv"
    rows = [
        "record_id,person_number,case_numbers,name,status_code,effective_at",
        *(f'{agency}-c{n},P-{n},"CSV-{agency}-{n};CSV-X-{n}",Doe,BOOKED,2026-01-0{n + 1}T10:00:00Z' for n in range(3)),
    ]
    csv_file.write_text("\n".join(rows) + "\n")
    uploaded = invoke(stack, "feed", "push", agency, str(csv_file), "--poll-interval", "0.1", api_key=key)
    assert uploaded.exit_code == 0, uploaded.output
    assert "feed.csv: 3 records · accepted 3 · duplicate 0 · stale 0 · rejected 0" in uploaded.stdout

    refused = invoke(stack, "feed", "push", agency, str(feed), api_key="cwk_nope")
    assert refused.exit_code == 1
    assert "the API key was refused (401)" in refused.stderr
    key_id = next(
        line.split()[0]
        for line in invoke(stack, "agency", "key", "list", agency).stdout.splitlines()
        if "cli test" in line
    )
    assert invoke(stack, "agency", "key", "revoke", agency, key_id).exit_code == 0
    revoked = invoke(stack, "feed", "push", agency, str(feed), "--batch-size", "4", api_key=key)
    assert revoked.exit_code == 1
    assert "the API key was refused (401)" in revoked.stderr


@pytest.mark.e2e
@pytest.mark.integration
async def test_delivery_tail_shows_the_notices_of_a_verified_subscriber(
    stack: Stack, system: SystemDriver, tmp_path: Path
) -> None:
    token = uuid.uuid4().hex[:6]
    agency, case = f"cli-{token}", f"CR-{token}"
    key = new_agency(stack, agency)
    await wait_for_agency(system, agency)
    sms = f"+1512555{int(token, 16) % 10_000:04d}"
    victim = await system.subscribe(agency, case, sms=sms)
    await system.verify(victim, "sms")
    feed = tmp_path / "booking.json"
    feed.write_text(json.dumps([custody_record(f"{token}-1", case, "BOOKED")]))
    assert invoke(stack, "feed", "push", agency, str(feed), api_key=key).exit_code == 0
    received = await system.wait_for("sms", sms, lambda messages: len(messages) >= 2)
    notification_ids = {str(message["reference"]).rsplit(".a", 1)[0] for message in received}
    assert len(notification_ids) == 2

    # The installed command itself (python -m runs the same main() as the console script).
    environment = {name: value for name, value in cli_env(stack).items() if value is not None}
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "cli", "delivery", "tail", "--once", "--agency", agency],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **environment},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    raw_out, raw_err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, raw_err.decode()
    tail_out = raw_out.decode()
    lines = tail_out.splitlines()
    assert len(lines) == 2, lines
    assert {line.split()[2] for line in lines} == notification_ids
    # The booking is told as a change, or (had the verification reached matching only after it) as the welcome
    # with the current status: both are the notice the subscriber is owed.
    kinds = [line.split()[3] for line in lines]
    assert kinds[0] == "verification"
    assert kinds[1] in {"status_change", "current_status"}
    assert all(" sms " in line and "local-sms" in line for line in lines)
    assert sms not in tail_out
    assert not CLEAR_CONTACT.search(tail_out)
    assert invoke(stack, "delivery", "tail", "--once", "--subscription", victim.subscription_id).stdout.count(
        "\n"
    ) == len(lines)

    refused = invoke(stack, "delivery", "tail", "--once", "--operator-token", "wrong")
    assert refused.exit_code == 1
    assert "the operator token was refused (401)" in refused.stderr


@pytest.mark.e2e
@pytest.mark.integration
async def test_the_demo_story_plays_to_the_end(stack: Stack) -> None:
    told: list[str] = []
    result = await play_story(stack, say=told.append, within=45)

    contacts = {arrival.contact for arrival in result.codes}
    assert {(c.who, c.language, c.channel) for c in contacts} == {
        ("Alex", "en", "sms"),
        ("Alex", "en", "email"),
        ("Sofía", "es", "sms"),
        ("Sofía", "es", "email"),
    }
    assert {arrival.contact for arrival in result.booking} == contacts
    assert {arrival.contact for arrival in result.release} == contacts
    for arrival in result.codes:
        if arrival.contact.channel == "sms":
            assert re.search(r"\b\d{6}\b", arrival.text), arrival.text
    # What the sinks hold in the end: each contact, in its language, got the booking and the release.
    markers = {"en": ("BOOKED INTO CUSTODY", "RELEASED"), "es": ("DETENIDO", "LIBERADO")}
    async with httpx.AsyncClient(timeout=10) as client:
        driver = SystemDriver(stack, client)
        for contact in contacts:
            messages = await driver.received(contact.channel, contact.address)
            texts = " ".join(str(m.get("body") or m.get("text")) for m in messages)
            for marker in markers[contact.language]:
                assert marker in texts, (contact.label, marker)
            assert result.case in texts

    assert told[0].startswith("1. The jail.")
    assert told[-1].startswith("Done: ")
    assert all(arrival.seconds < 45 for arrival in (*result.booking, *result.release))
    for contact in contacts:  # victims' contacts are told masked only
        assert not any(contact.address in line for line in told), contact.label
