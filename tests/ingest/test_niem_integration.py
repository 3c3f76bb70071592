"""NIEM XML exchanges pushed to the real ingest app (real PostgreSQL and Kafka): answers, events, idempotency,
refusals and recovery of a stored document."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from services.ingest.agencies import store as agencies_store
from services.ingest.domain.events import event_id_for
from services.ingest.flows import batches
from services.ingest.settings import IngestSettings
from shared.envelope import decode
from shared.events import CustodyStatusChanged
from shared.settings import KafkaSettings
from shared.topics import CUSTODY_STATUS_CHANGED
from tests.ingest.conftest import create_agency, push, record, results
from tests.kafkautil import read_exactly

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).parent / "niem"
XML = {"Content-Type": "application/xml"}
MAX_BODY_BYTES = 16 * 1024


@pytest.fixture
def ingest_settings(ingest_settings: IngestSettings) -> IngestSettings:
    """The shared ingest settings with a small body limit, so the 413 answer is reachable with a small document."""
    return ingest_settings.model_copy(update={"max_body_bytes": MAX_BODY_BYTES})


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


async def push_niem(
    client: httpx.AsyncClient, agency_id: str, auth: dict[str, str], body: bytes, **headers: str
) -> httpx.Response:
    return await client.post(
        f"/v1/agencies/{agency_id}/custody-events/niem", content=body, headers=auth | XML | headers
    )


def answers(response: httpx.Response) -> list[tuple[str | None, str]]:
    assert response.status_code == 200, response.text
    return [(entry["record_id"], entry["result"]) for entry in response.json()["results"]]


async def custody_events(kafka_settings: KafkaSettings, count: int) -> dict[str, CustodyStatusChanged]:
    messages = await read_exactly(kafka_settings, kafka_settings.topic(CUSTODY_STATUS_CHANGED.name), count)
    changes: dict[str, CustodyStatusChanged] = {}
    for message in messages:
        event = decode(message.value)
        change = event.data
        assert isinstance(change, CustodyStatusChanged)
        assert event.id == event_id_for(change.agency_id, change.agency_record_id)
        assert message.key is not None
        assert message.key.decode() == f"{change.agency_id}/{change.subject_id}"
        changes[change.agency_record_id] = change
    return changes


def identifiers(change: CustodyStatusChanged) -> set[tuple[str, str]]:
    return {(identifier.kind.value, identifier.value) for identifier in change.identifiers}


async def test_the_three_exchanges_become_custody_events(
    ingest: httpx.AsyncClient, kafka_settings: KafkaSettings, pool: asyncpg.Pool
) -> None:
    auth = await create_agency(ingest, "harlan")

    booked = await push_niem(ingest, "harlan", auth, sample("booking_report.xml"))
    assert answers(booked) == [("BR-2026-1121-0007#1", "accepted"), ("booking:BKG-99120", "accepted")]
    assert booked.json()["summary"] == {"accepted": 2, "duplicate": 0, "stale": 0, "sealed": 0, "rejected": 0}
    assert [entry["index"] for entry in booked.json()["results"]] == [0, 1]
    court = await push_niem(ingest, "harlan", auth, sample("custody_status_change_report.xml"))
    assert answers(court) == [("CSCR-2026-1124-0112", "accepted")]
    released = await push_niem(ingest, "harlan", auth, sample("custody_release_report.xml"))
    assert answers(released) == [("release:REL-55102", "accepted"), ("release:REL-55103", "accepted")]

    changes = await custody_events(kafka_settings, 5)
    assert set(changes) == {
        "BR-2026-1121-0007#1",
        "booking:BKG-99120",
        "CSCR-2026-1124-0112",
        "release:REL-55102",
        "release:REL-55103",
    }
    whitcombe = changes["BR-2026-1121-0007#1"]
    assert whitcombe.status == "in_custody"
    assert whitcombe.previous_status is None
    assert whitcombe.display_name == "Dale R. Whitcombe"
    assert whitcombe.facility == "Harlan County Detention Center"
    assert whitcombe.effective_at == datetime(2026, 11, 21, 4, 14, tzinfo=UTC)  # 22:14 in Chicago
    assert whitcombe.feed_batch_id == booked.json()["batch_id"]
    assert identifiers(whitcombe) == {
        ("person_number", "P-778120"),
        ("booking_number", "B26-004417"),
        ("case_number", "CR-2026-004512"),
        ("case_number", "T-2026-88410"),
    }
    court_date = changes["CSCR-2026-1124-0112"]
    assert court_date.subject_id == changes["booking:BKG-99120"].subject_id
    assert court_date.status == "court_date_set"
    assert court_date.previous_status == "in_custody"
    assert court_date.court_date == datetime(2026, 12, 15, 15, 30, tzinfo=UTC)
    assert ("case_number", "CR-2026-004530") in identifiers(court_date)
    bond = changes["release:REL-55102"]
    assert bond.subject_id == whitcombe.subject_id
    assert (bond.status, bond.release_reason, bond.previous_status) == ("released", "bond", "in_custody")
    recognisance = changes["release:REL-55103"]
    assert recognisance.subject_id == court_date.subject_id
    assert (recognisance.status, recognisance.release_reason) == ("released", "own_recognisance")
    assert recognisance.previous_status == "court_date_set"
    assert recognisance.effective_at == datetime(2026, 11, 26, 22, 11, tzinfo=UTC)

    kinds = await pool.fetch("SELECT kind, status FROM feed_batches ORDER BY received_at")
    assert [(row["kind"], row["status"]) for row in kinds] == [("niem", "processed")] * 3


async def test_a_retry_with_the_same_key_answers_the_same_beside_json_and_a_bad_part_is_rejected_alone(
    ingest: httpx.AsyncClient, kafka_settings: KafkaSettings
) -> None:
    auth = await create_agency(ingest, "harlan")
    body = sample("booking_report.xml")
    first = await push_niem(ingest, "harlan", auth, body, **{"Idempotency-Key": "br-0007"})
    again = await push_niem(ingest, "harlan", auth, body, **{"Idempotency-Key": "br-0007"})
    assert again.status_code == 200
    assert again.json() == first.json()
    other = await push_niem(
        ingest, "harlan", auth, sample("custody_release_report.xml"), **{"Idempotency-Key": "br-0007"}
    )
    assert other.status_code == 422
    assert "Idempotency-Key was already used for a different body" in other.json()["detail"]
    json_same_key = await push(ingest, "harlan", auth, [record("j-1")], {"Idempotency-Key": "br-0007"})
    assert json_same_key.status_code == 422
    json_push = await push(ingest, "harlan", auth, [record("j-1", person_number="P-9", booking_number="B-9")])
    assert results(json_push) == ["accepted"]
    resent = await push_niem(ingest, "harlan", auth, body)
    assert answers(resent) == [("BR-2026-1121-0007#1", "duplicate"), ("booking:BKG-99120", "duplicate")]

    undated = sample("custody_release_report.xml").replace(b"<nc:DateTime>2026-11-26T16:05:00-06:00</nc:DateTime>", b"")
    partial = await push_niem(ingest, "harlan", auth, undated)
    assert answers(partial) == [("release:REL-55102", "rejected"), ("release:REL-55103", "accepted")]
    assert partial.json()["results"][0]["reason"] == "no date: give nc:Release/nc:ActivityDate (nc:DateTime or nc:Date)"

    changes = await custody_events(kafka_settings, 4)
    assert set(changes) == {"BR-2026-1121-0007#1", "booking:BKG-99120", "j-1", "release:REL-55103"}


async def test_hostile_or_unreadable_xml_is_refused_and_changes_nothing(
    ingest: httpx.AsyncClient, kafka_settings: KafkaSettings, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    auth = await create_agency(ingest, "harlan")
    refused: list[tuple[str, int, str]] = [
        ("hostile_billion_laughs.xml", 400, "entity declaration 'lol' refused"),
        ("hostile_external_entity.xml", 400, "external entity 'xxe' refused (it names 'file:///etc/passwd')"),
        ("hostile_parameter_entity.xml", 400, "external entity 'remote' refused"),
        ("hostile_external_dtd.xml", 400, "external DTD refused"),
        ("malformed.xml", 400, "body is not well-formed XML: mismatched tag at line 8 column"),
        ("unknown_namespace.xml", 422, "'http://example.org/exchange/BookingReport/2.0'"),
        ("niem2_booking_report.xml", 422, "unsupported NIEM namespace 'http://niem.gov/niem/domains/jxdm/4.0'"),
    ]
    for name, status_code, message in refused:
        response = await push_niem(ingest, "harlan", auth, sample(name), **{"Idempotency-Key": name})
        assert response.status_code == status_code, (name, response.text)
        assert message in response.json()["detail"], (name, response.text)
        retried = await push_niem(ingest, "harlan", auth, sample(name), **{"Idempotency-Key": name})
        assert (retried.status_code, retried.json()) == (status_code, response.json())

    warnings = [r.getMessage() for r in caplog.records if r.name == "services.ingest.routes.niem"]
    assert len(warnings) == len(refused)  # once per refused document, not again for its retry
    assert any("external entity 'xxe' refused" in warning for warning in warnings)

    as_json = await push_niem(
        ingest, "harlan", auth, sample("booking_report.xml"), **{"Content-Type": "application/json"}
    )
    assert as_json.status_code == 415
    assert "'application/json' is not XML" in as_json.json()["detail"]
    too_large = await push_niem(ingest, "harlan", auth, b"<a>" + b" " * MAX_BODY_BYTES + b"</a>")
    assert too_large.status_code == 413
    empty = await push_niem(ingest, "harlan", auth, b"  ")
    assert empty.status_code == 400
    unauthenticated = await push_niem(ingest, "harlan", {}, sample("booking_report.xml"))
    assert unauthenticated.status_code == 401

    assert await pool.fetchval("SELECT count(*) FROM subjects") == 0
    assert await pool.fetchval("SELECT count(*) FROM custody_records") == 0
    topic = kafka_settings.topic(CUSTODY_STATUS_CHANGED.name)
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE topic = $1", topic) == 0
    stored = await pool.fetch("SELECT kind, status FROM feed_batches")
    assert {(row["kind"], row["status"]) for row in stored} == {("niem", "failed")}
    assert len(stored) == len(refused)

    accepted = await push_niem(ingest, "harlan", auth, sample("booking_report.xml"))
    assert [result for _, result in answers(accepted)] == ["accepted", "accepted"]
    assert len(await custody_events(kafka_settings, 2)) == 2


async def test_a_stored_document_the_service_never_applied_is_recovered(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings, kafka_settings: KafkaSettings, pool: asyncpg.Pool
) -> None:
    """As if the service died between storing the raw document and applying it."""
    await create_agency(ingest, "harlan")
    body = sample("custody_status_change_report.xml")
    async with pool.acquire() as connection:
        agency = await agencies_store.get_agency(connection, "harlan")
    assert agency is not None
    batch_id, known = await batches.receive_batch(
        pool,
        ingest_settings,
        agency,
        body=body,
        body_sha256=hashlib.sha256(body).hexdigest(),
        idempotency_key=None,
        kind="niem",
    )
    assert not known
    assert await pool.fetchval("SELECT status FROM feed_batches WHERE batch_id = $1", batch_id) == "received"

    no_grace = ingest_settings.model_copy(update={"recovery_grace_seconds": 0})
    assert await batches.recover_stored_batches(pool, no_grace) == 1

    row = await pool.fetchrow("SELECT kind, status, result FROM feed_batches WHERE batch_id = $1", batch_id)
    assert row is not None
    assert (row["kind"], row["status"]) == ("niem", "processed")
    result: dict[str, Any] = row["result"]
    assert [(r["record_id"], r["result"]) for r in result["body"]["results"]] == [("CSCR-2026-1124-0112", "accepted")]
    changes = await custody_events(kafka_settings, 1)
    assert changes["CSCR-2026-1124-0112"].status == "court_date_set"
    assert changes["CSCR-2026-1124-0112"].feed_batch_id == batch_id
