"""JSON feeds against real Kafka and PostgreSQL: auth, change detection, idempotency, bad input."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from services.ingest.domain.events import event_id_for
from services.ingest.settings import IngestSettings
from shared.envelope import decode
from shared.events import CustodyStatusChanged
from shared.settings import KafkaSettings
from shared.topics import CUSTODY_STATUS_CHANGED
from tests.ingest.conftest import ADMIN, create_agency, push, record, results
from tests.kafkautil import read_exactly

pytestmark = pytest.mark.integration


async def custody_events(kafka_settings: KafkaSettings, count: int) -> list[CustodyStatusChanged]:
    records = await read_exactly(kafka_settings, kafka_settings.topic(CUSTODY_STATUS_CHANGED.name), count)
    events = [decode(r.value) for r in records]
    changes = [event.data for event in events]
    assert all(isinstance(change, CustodyStatusChanged) for change in changes)
    for event, raw in zip(events, records, strict=True):
        assert raw.key.decode() == f"{event.data.agency_id}/{event.data.subject_id}"  # type: ignore[attr-defined]
        assert event.id == event_id_for(event.data.agency_id, event.data.agency_record_id)  # type: ignore[attr-defined]
    return changes  # type: ignore[return-value]


async def test_the_same_batch_posted_twice_yields_one_set_of_events(
    ingest: httpx.AsyncClient, kafka_settings: KafkaSettings
) -> None:
    auth = await create_agency(ingest, "county")
    batch = [
        record("r-1", minutes=90),
        record("r-2", "RELEASED_BOND", minutes=30),
        record("r-3", minutes=20, person_number="P-9", booking_number="B-9", case_numbers=["CR-9"]),
    ]
    first = await push(ingest, "county", auth, batch)
    assert results(first) == ["accepted", "accepted", "accepted"]
    assert first.json()["summary"]["accepted"] == 3
    second = await push(ingest, "county", auth, batch)
    assert results(second) == ["duplicate", "duplicate", "duplicate"]

    changes = await custody_events(kafka_settings, 3)
    subject = next(c.subject_id for c in changes if c.agency_record_id == "r-1")
    assert [c.agency_record_id for c in changes if c.subject_id == subject] == ["r-1", "r-2"]
    release = next(c for c in changes if c.agency_record_id == "r-2")
    assert release.status == "released"
    assert release.previous_status == "in_custody"
    assert release.release_reason == "bond"
    assert release.feed_batch_id == first.json()["batch_id"]
    assert {(i.kind, i.value) for i in release.identifiers} == {
        ("person_number", "P-100"),
        ("booking_number", "B-200"),
        ("case_number", "CR-300"),
    }


async def test_records_out_of_order_yield_events_only_for_the_newest_state(
    ingest: httpx.AsyncClient, kafka_settings: KafkaSettings, pool: asyncpg.Pool
) -> None:
    auth = await create_agency(ingest, "county")
    now = datetime.now(UTC)

    def at(minutes: int) -> str:
        return (now - timedelta(minutes=minutes)).isoformat()

    assert results(await push(ingest, "county", auth, [record("late-3", "RELEASED", effective_at=at(10))])) == [
        "accepted"
    ]
    older = [record("late-1", "BOOKED", effective_at=at(50)), record("late-2", "ESCAPED", effective_at=at(30))]
    assert results(await push(ingest, "county", auth, older)) == ["stale", "stale"]
    same_time_higher_sequence = record("late-4", "RETURNED_TO_CUSTODY", effective_at=at(10), sequence=2)
    assert results(await push(ingest, "county", auth, [same_time_higher_sequence])) == ["accepted"]
    lower_sequence = record("late-5", "ESCAPED", effective_at=at(10), sequence=1)
    assert results(await push(ingest, "county", auth, [lower_sequence])) == ["stale"]
    repeat = record("late-6", "RETURNED_TO_CUSTODY", effective_at=at(5))
    assert results(await push(ingest, "county", auth, [repeat])) == ["duplicate"]

    changes = await custody_events(kafka_settings, 2)
    assert [c.agency_record_id for c in changes] == ["late-3", "late-4"]
    stored = {r["record_id"]: r["result"] for r in await _records(ingest, pool)}
    assert stored == {
        "late-1": "stale",
        "late-2": "stale",
        "late-3": "accepted",
        "late-4": "accepted",
        "late-5": "stale",
        "late-6": "duplicate",
    }


async def _records(_: httpx.AsyncClient, pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return list(await pool.fetch("SELECT record_id, result FROM custody_records"))


async def test_an_agency_key_cannot_post_to_another_agency(ingest: httpx.AsyncClient) -> None:
    auth_a = await create_agency(ingest, "agency-a")
    auth_b = await create_agency(ingest, "agency-b")
    batch = [record("x-1")]
    forbidden = await push(ingest, "agency-b", auth_a, batch)
    assert forbidden.status_code == 403
    assert "own agency" in forbidden.json()["detail"]
    assert (await push(ingest, "agency-b", {}, batch)).status_code == 401
    assert (await push(ingest, "agency-b", {"Authorization": "Bearer cwk_000000000000_nope"}, batch)).status_code == 401
    tampered = {"Authorization": auth_b["Authorization"] + "x"}
    assert (await push(ingest, "agency-b", tampered, batch)).status_code == 401
    assert results(await push(ingest, "agency-b", auth_b, batch)) == ["accepted"]

    key_id = auth_b["Authorization"].split("_")[1]
    revoked = await ingest.delete(f"/v1/admin/agencies/agency-b/keys/{key_id}", headers=ADMIN)
    assert revoked.status_code == 200
    assert (await push(ingest, "agency-b", auth_b, [record("x-2")])).status_code == 401
    assert (await ingest.delete(f"/v1/admin/agencies/agency-a/keys/{key_id}", headers=ADMIN)).status_code == 404
    keys = (await ingest.get("/v1/admin/agencies/agency-b/keys", headers=ADMIN)).json()
    assert [(k["key_id"], k["revoked_at"] is not None) for k in keys] == [(key_id, True)]
    assert "api_key" not in keys[0]


async def test_idempotency_key_returns_the_first_answer_and_refuses_another_body(ingest: httpx.AsyncClient) -> None:
    auth = await create_agency(ingest, "county")
    batch = [record("i-1"), record("i-2", "RELEASED")]
    key = {"Idempotency-Key": "batch-0001"}
    first = await push(ingest, "county", auth, batch, key)
    again = await push(ingest, "county", auth, batch, key)
    assert results(first) == ["accepted", "accepted"]
    assert again.json() == first.json()
    other = await push(ingest, "county", auth, [record("i-3")], key)
    assert other.status_code == 422
    assert "Idempotency-Key" in other.json()["detail"]


async def test_bad_records_are_rejected_with_reasons_while_good_ones_go_through(
    ingest: httpx.AsyncClient, kafka_settings: KafkaSettings
) -> None:
    auth = await create_agency(ingest, "county")
    batch = [
        record("ok-1"),
        record("bad-code", "VANISHED", person_number="P-2", booking_number=None, case_numbers=[]),
        record("bad-future", effective_at="2999-01-01T00:00:00Z", person_number="P-3"),
        record("bad-old", effective_at="1850-01-01T00:00:00Z", person_number="P-4"),
        record("bad-type", effective_at="soon", person_number="P-5"),
        record("ok-1", "RELEASED"),
        "not an object",
        record("no-id", person_number=None, booking_number=None, case_numbers=[]),
    ]
    response = await push(ingest, "county", auth, batch)  # type: ignore[arg-type]
    assert results(response) == ["accepted"] + ["rejected"] * 7
    reasons = [entry["reason"] for entry in response.json()["results"]]
    assert "unknown status code 'VANISHED'" in reasons[1]
    assert "future" in reasons[2]
    assert "before 1900" in reasons[3]
    assert "effective_at" in reasons[4]
    assert "repeated within this batch" in reasons[5]
    assert "JSON object" in reasons[6]
    assert "no identifier" in reasons[7]
    changes = await custody_events(kafka_settings, 1)
    assert changes[0].agency_record_id == "ok-1"


async def test_malformed_or_oversized_batches_get_specific_4xx(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    auth = await create_agency(ingest, "county")
    url = "/v1/agencies/county/custody-events"
    malformed = await ingest.post(url, content=b'{"records": [', headers=auth)
    assert malformed.status_code == 400
    assert "not valid JSON" in malformed.json()["detail"]
    assert (await ingest.post(url, content=b"", headers=auth)).status_code == 400
    assert (await ingest.post(url, content=b"\xff\xfe", headers=auth)).status_code == 400
    wrong_shape = await ingest.post(url, json={"rows": []}, headers=auth)
    assert wrong_shape.status_code == 422
    assert (await ingest.post(url, json={"records": []}, headers=auth)).status_code == 422
    too_many = [{"record_id": str(n)} for n in range(ingest_settings.max_records_per_batch + 1)]
    many = await ingest.post(url, json={"records": too_many}, headers=auth)
    assert many.status_code == 413
    assert "limit is" in many.json()["detail"]
    huge = b'{"records": [' + b" " * ingest_settings.max_body_bytes + b"]}"
    oversized = await ingest.post(url, content=huge, headers=auth)
    assert oversized.status_code == 413
    unknown = await ingest.post("/v1/agencies/nowhere/custody-events", json={"records": []}, headers=auth)
    assert unknown.status_code == 404
    assert "unknown agency 'nowhere'" in unknown.json()["detail"]
    assert (await ingest.get("/v1/admin/agencies/nowhere", headers=ADMIN)).status_code == 404
    # The good batch after all that still works.
    assert results(await push(ingest, "county", auth, [record("after")])) == ["accepted"]


async def test_five_thousand_records_in_one_batch(ingest: httpx.AsyncClient, kafka_settings: KafkaSettings) -> None:
    auth = await create_agency(ingest, "county")
    batch = [record(f"big-{n}", person_number=f"P-{n}", booking_number=None, case_numbers=[]) for n in range(5000)]
    response = await push(ingest, "county", auth, batch)
    assert response.json()["summary"]["accepted"] == 5000
    topic = kafka_settings.topic(CUSTODY_STATUS_CHANGED.name)
    events = await read_exactly(kafka_settings, topic, 5000, settle=0.5)
    assert len({json.loads(e.value)["id"] for e in events}) == 5000


async def test_the_same_batch_posted_concurrently_yields_one_set_of_events(
    ingest: httpx.AsyncClient, kafka_settings: KafkaSettings
) -> None:
    auth = await create_agency(ingest, "county")
    batch = [record(f"c-{n}", person_number=f"P-{n}", booking_number=None, case_numbers=[]) for n in range(200)]
    first, second = await asyncio.gather(push(ingest, "county", auth, batch), push(ingest, "county", auth, batch))
    outcomes = sorted([set(results(first)), set(results(second))], key=sorted)
    assert outcomes == [{"accepted"}, {"duplicate"}]
    topic = kafka_settings.topic(CUSTODY_STATUS_CHANGED.name)
    assert len(await read_exactly(kafka_settings, topic, 200)) == 200
