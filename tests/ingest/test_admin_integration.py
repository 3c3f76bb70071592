"""Agencies, sealing, feed health and recovery against real Kafka and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from services.ingest.agencies import store as agencies_store
from services.ingest.app import create_app
from services.ingest.feed_health.flows import check_feed_health
from services.ingest.flows import batches
from services.ingest.settings import DEV_ADMIN_TOKEN, IngestSettings
from shared.envelope import decode
from shared.events import AgencyProfile, OpsAlert, SubjectSealed
from shared.settings import KafkaSettings
from shared.topics import AGENCY_PROFILE, CUSTODY_STATUS_CHANGED, OPS_ALERT, SUBJECT_SEALED
from tests.apps import running_app
from tests.ingest.conftest import ADMIN, create_agency, push, record, results
from tests.kafkautil import PRODUCTION_KAFKA, read_exactly

pytestmark = pytest.mark.integration


async def test_agency_administration_publishes_profiles(
    ingest: httpx.AsyncClient, kafka_settings: KafkaSettings
) -> None:
    body = {
        "agency_id": "county",
        "name": "County Jail",
        "timezone": "America/Chicago",
        "victim_services_phone": "+15125550199",
        "expected_feed_interval_minutes": 15,
    }
    assert (await ingest.post("/v1/admin/agencies", json=body)).status_code == 401
    assert (
        await ingest.post("/v1/admin/agencies", json=body, headers={"Authorization": "Bearer no"})
    ).status_code == 401
    created = await ingest.post("/v1/admin/agencies", json=body, headers=ADMIN)
    assert created.status_code == 201
    assert created.json()["status_map"]["BOOKED"] == {"status": "in_custody", "release_reason": None}
    assert (await ingest.post("/v1/admin/agencies", json=body, headers=ADMIN)).status_code == 409
    bad_zone = await ingest.post(
        "/v1/admin/agencies", json=body | {"agency_id": "x1", "timezone": "Mars/Base"}, headers=ADMIN
    )
    assert bad_zone.status_code == 422
    assert "time zone" in bad_zone.text

    changes = {
        "name": "County Detention Center",
        "status_map": {"IN": {"status": "in_custody"}, "OUT": {"status": "released", "release_reason": "bond"}},
    }
    updated = await ingest.patch("/v1/admin/agencies/county", json=changes, headers=ADMIN)
    assert updated.status_code == 200, updated.text
    assert set(updated.json()["status_map"]) == {"IN", "OUT"}
    bad_map = await ingest.patch(
        "/v1/admin/agencies/county", json={"status_map": {"X": {"status": "evaporated"}}}, headers=ADMIN
    )
    assert bad_map.status_code == 422
    assert (await ingest.patch("/v1/admin/agencies/nowhere", json={"name": "x"}, headers=ADMIN)).status_code == 404
    assert (await ingest.patch("/v1/admin/agencies/county", json={"name": None}, headers=ADMIN)).status_code == 422

    published = await read_exactly(kafka_settings, kafka_settings.topic(AGENCY_PROFILE.name), 2)
    profiles = [decode(message.value).data for message in published]
    assert all(isinstance(p, AgencyProfile) for p in profiles)
    assert [p.name for p in profiles] == ["County Jail", "County Detention Center"]  # type: ignore[attr-defined]
    assert {m.key for m in published} == {b"county"}

    key = await ingest.post("/v1/admin/agencies/county/keys", headers=ADMIN)
    auth = {"Authorization": f"Bearer {key.json()['api_key']}"}
    assert results(
        await push(ingest, "county", auth, [record("n-1", "OUT"), record("n-2", "BOOKED", person_number="Z")])
    ) == [
        "accepted",
        "rejected",
    ]


async def test_a_sealed_subject_gets_no_event_and_no_disclosure(
    ingest: httpx.AsyncClient, kafka_settings: KafkaSettings
) -> None:
    auth = await create_agency(ingest, "county")
    assert results(await push(ingest, "county", auth, [record("s-1", minutes=60)])) == ["accepted"]
    url = "/v1/agencies/county/sealed-subjects"
    seal = {"identifiers": [{"kind": "booking_number", "value": " b-200 "}, {"kind": "case_number", "value": "CR-301"}]}
    sealed = await ingest.post(url, json=seal, headers=auth)
    assert sealed.status_code == 200, sealed.text
    assert {i["value"] for i in sealed.json()["identifiers"]} == {"P-100", "B-200", "CR-300", "CR-301"}
    assert (await ingest.post(url, json=seal, headers=auth)).json()["sealed_at"] == sealed.json()["sealed_at"]
    assert (await ingest.post(url, json={"identifiers": []}, headers=auth)).status_code == 422

    later = record("s-2", "RELEASED", minutes=5, person_number=None, booking_number=None, case_numbers=["CR-301"])
    assert results(await push(ingest, "county", auth, [later])) == ["sealed"]
    # Sealing a subject not seen yet catches its first record too.
    unseen = {"identifiers": [{"kind": "person_number", "value": "P-777"}]}
    assert (await ingest.post(url, json=unseen, headers=auth)).status_code == 200
    first = record("s-3", minutes=5, person_number="P-777", booking_number=None, case_numbers=[])
    assert results(await push(ingest, "county", auth, [first])) == ["sealed"]
    both = {"identifiers": [{"kind": "person_number", "value": "P-777"}, {"kind": "person_number", "value": "P-100"}]}
    assert (await ingest.post(url, json=both, headers=auth)).status_code == 409

    custody = await read_exactly(kafka_settings, kafka_settings.topic(CUSTODY_STATUS_CHANGED.name), 1)
    assert [decode(m.value).data.agency_record_id for m in custody] == ["s-1"]  # type: ignore[attr-defined]
    seals = await read_exactly(kafka_settings, kafka_settings.topic(SUBJECT_SEALED.name), 2)
    assert all(isinstance(decode(m.value).data, SubjectSealed) for m in seals)
    health = (await ingest.get("/v1/agencies/county/feed-health", headers=auth)).json()
    assert health["in_custody"] == 0, "a sealed subject is not disclosed, not even as a count"


async def test_feed_health_counts_and_alerts_once_when_a_feed_goes_quiet(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings, kafka_settings: KafkaSettings, pool: asyncpg.Pool
) -> None:
    auth = await create_agency(ingest, "county", expected_feed_interval_minutes=30)
    batch = [
        record("h-1"),
        record("h-2", "VANISHED", person_number="P-2"),
        record("h-3", person_number="P-3", booking_number="B-3", case_numbers=[]),
    ]
    await push(ingest, "county", auth, batch)
    health = (await ingest.get("/v1/agencies/county/feed-health", headers=auth)).json()
    assert health["stale"] is False
    assert health["notices_paused"] is False
    assert health["in_custody"] == 2
    assert health["records_last_24h"] == {"accepted": 2, "rejected": 1}
    assert health["records_total"] == {"accepted": 2, "rejected": 1}
    all_health = (await ingest.get("/v1/admin/feed-health", headers=ADMIN)).json()
    assert [h["agency_id"] for h in all_health] == ["county"]
    assert (await ingest.get("/v1/admin/feed-health")).status_code == 401
    metrics = (await ingest.get("/metrics")).text
    assert 'cw_ingest_records_total{agency="county",result="accepted"}' in metrics
    assert 'cw_ingest_in_custody{agency="county"} 2.0' in metrics
    assert 'cw_ingest_last_feed_timestamp_seconds{agency="county"}' in metrics

    an_hour_later = datetime.now(UTC) + timedelta(hours=1)
    assert await check_feed_health(pool, ingest_settings, an_hour_later) == ["county"]
    assert await check_feed_health(pool, ingest_settings, an_hour_later) == [], "alerted once"
    await push(ingest, "county", auth, [record("h-4", "RELEASED")])
    alerts = await read_exactly(kafka_settings, kafka_settings.topic(OPS_ALERT.name), 2)
    kinds = [decode(m.value).data for m in alerts]
    assert [(a.kind, a.agency_id) for a in kinds if isinstance(a, OpsAlert)] == [
        ("feed_stale", "county"),
        ("feed_recovered", "county"),
    ]


async def test_a_stored_batch_left_unprocessed_is_recovered_on_start(
    ingest_settings: IngestSettings, kafka_settings: KafkaSettings, pool: asyncpg.Pool
) -> None:
    """As after a crash between storing the raw batch and applying it: the recovery loop applies it."""
    settings = ingest_settings.model_copy(update={"recovery_grace_seconds": 0.0})
    async with running_app(create_app(settings)) as client:
        auth = await create_agency(client, "county")
        async with pool.acquire() as connection:
            agency = await agencies_store.get_agency(connection, "county")
        assert agency is not None
        body = json.dumps({"records": [record("lost-1"), record("lost-2", "ESCAPED")]}).encode()
        batch_id, _ = await batches.receive_batch(
            pool,
            settings,
            agency,
            body=body,
            body_sha256=hashlib.sha256(body).hexdigest(),
            idempotency_key="k-1",
        )
        deadline = time.monotonic() + 10
        while await pool.fetchval("SELECT status FROM feed_batches WHERE batch_id = $1", batch_id) != "processed":
            assert time.monotonic() < deadline, "the stored batch was not recovered"
            await asyncio.sleep(0.1)
        retried = await push(client, "county", auth, json.loads(body)["records"], {"Idempotency-Key": "k-1"})
        assert results(retried) == ["accepted", "accepted"]
    published = await read_exactly(kafka_settings, kafka_settings.topic(CUSTODY_STATUS_CHANGED.name), 2)
    assert len(published) == 2


def test_production_refuses_the_development_admin_token() -> None:
    with pytest.raises(ValueError, match="INGEST_ADMIN_TOKEN"):
        IngestSettings(environment="production", admin_token=DEV_ADMIN_TOKEN)
    real = IngestSettings(
        environment="production", admin_token="a-real-secret-of-enough-length", kafka=PRODUCTION_KAFKA
    )
    assert real.admin_token
