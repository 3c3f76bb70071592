"""Case information on feed records (JSON and CSV), and an agency's contacts and referrals, against real servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from shared.envelope import decode
from shared.events import AgencyProfile, CustodyStatusChanged
from shared.settings import KafkaSettings
from shared.topics import AGENCY_PROFILE, CUSTODY_STATUS_CHANGED
from shared.vocabulary import ChargeSeverity, ContactRole, ImmigrationStage
from tests.ingest.conftest import ADMIN, create_agency, push, record, results
from tests.ingest.test_files_integration import wait_for_job
from tests.kafkautil import read_exactly

pytestmark = pytest.mark.integration

RESOURCES: dict[str, Any] = {
    "contacts": [
        {"role": "hotline", "name": "Victim line", "phone": "+15125550100", "hours": "24/7", "languages": ["en", "es"]},
        {"role": "victim_advocate", "name": "Ana Ruiz", "email": "ana.ruiz@county.example", "languages": ["es"]},
    ],
    "referrals": [
        {"name": "Safe House", "category": "shelter", "phone": "+15125550111", "url": "https://safe.example/"}
    ],
}


async def custody_changes(kafka_settings: KafkaSettings, count: int) -> list[CustodyStatusChanged]:
    messages = await read_exactly(kafka_settings, kafka_settings.topic(CUSTODY_STATUS_CHANGED.name), count)
    changes = [decode(message.value).data for message in messages]
    assert all(isinstance(change, CustodyStatusChanged) for change in changes)
    return changes  # type: ignore[return-value]


async def test_case_information_travels_and_a_new_scheduled_release_alone_is_a_case_update(
    ingest: httpx.AsyncClient, kafka_settings: KafkaSettings
) -> None:
    auth = await create_agency(ingest, "county")
    release_at = (datetime.now(UTC) + timedelta(days=14)).replace(microsecond=0)
    shared: dict[str, Any] = {
        "charges": [{"description": "Aggravated assault", "statute": "PC 22.02", "severity": "felony"}],
        "next_court_at": (release_at - timedelta(days=3)).isoformat(),
        "court_name": "County Court 2",
        "scheduled_release_at": release_at.isoformat(),
        "immigration_stage": "in_removal_proceedings",
        "bond_amount": "5000.00",
        "hold_reason": "Immigration detainer",
        "victim_contact_role": "victim_advocate",
    }
    first = await push(ingest, "county", auth, [record("r-1", minutes=60, **shared)])
    assert results(first) == ["accepted"]
    same = await push(ingest, "county", auth, [record("r-2", minutes=50, **shared)])
    assert results(same) == ["duplicate"]
    moved = shared | {"scheduled_release_at": (release_at + timedelta(days=2)).isoformat()}
    assert results(await push(ingest, "county", auth, [record("r-3", minutes=40, **moved)])) == ["accepted"]
    without = await push(ingest, "county", auth, [record("r-4", minutes=30)])
    assert results(without) == ["duplicate"]  # a record that shares nothing keeps what the last one shared

    booked, rescheduled = await custody_changes(kafka_settings, 2)
    assert booked.case is not None
    assert not booked.case_information_only
    assert booked.case.charges[0].severity is ChargeSeverity.FELONY
    assert booked.case.immigration_stage is ImmigrationStage.IN_REMOVAL_PROCEEDINGS
    assert booked.case.bond_amount == Decimal("5000.00")
    assert booked.case.victim_contact_role is ContactRole.VICTIM_ADVOCATE
    assert booked.case.scheduled_release_at == release_at
    assert rescheduled.case_information_only
    assert rescheduled.status == rescheduled.previous_status == "in_custody"
    assert rescheduled.case is not None
    assert rescheduled.case.scheduled_release_at == release_at + timedelta(days=2)


async def test_bad_case_information_is_a_specific_rejection(ingest: httpx.AsyncClient) -> None:
    auth = await create_agency(ingest, "county")
    answer = await push(
        ingest,
        "county",
        auth,
        [
            record("r-1", immigration_stage="deported_maybe"),
            record("r-2", person_number="P-2", booking_number="B-2", case_numbers=[], bond_amount="-5"),
            record("r-3", person_number="P-3", booking_number="B-3", case_numbers=[], transferred_to_agency_id="ice"),
        ],
    )
    reasons = [entry["reason"] for entry in answer.json()["results"]]
    assert results(answer) == ["rejected", "rejected", "rejected"]
    assert "immigration_stage" in reasons[0]
    assert "bond_amount" in reasons[1]
    assert "transferred_to_agency_id only goes with" in reasons[2]


async def test_csv_columns_carry_charges_and_dates(ingest: httpx.AsyncClient, kafka_settings: KafkaSettings) -> None:
    auth = await create_agency(ingest, "csv-jail", timezone="UTC")
    release_at = "2030-01-15 09:00:00"
    body = (
        "record_id,person_number,status_code,effective_at,charges,scheduled_release_at,immigration_stage\r\n"
        f"t1,P1,BOOKED,2026-01-01 10:00:00,Assault|PC 1|felony;Theft||misdemeanor,{release_at},removed\r\n"
        "t2,P2,BOOKED,2026-01-01 10:00:00,A|B|C|D,,\r\n"
    ).encode()
    uploaded = await ingest.post("/v1/agencies/csv-jail/custody-files", content=body, headers=auth)
    assert uploaded.status_code == 202, uploaded.text
    job = await wait_for_job(ingest, f"/v1/agencies/csv-jail/custody-files/{uploaded.json()['job_id']}", auth)
    assert job["rows_accepted"] == 1, job
    assert "at most three parts" in job["errors"][0]["reason"]
    (change,) = await custody_changes(kafka_settings, 1)
    assert change.case is not None
    assert [(c.description, c.statute, c.severity) for c in change.case.charges] == [
        ("Assault", "PC 1", ChargeSeverity.FELONY),
        ("Theft", None, ChargeSeverity.MISDEMEANOR),
    ]
    assert change.case.scheduled_release_at == datetime(2030, 1, 15, 9, tzinfo=UTC)


async def test_resources_are_set_by_the_admin_and_published_on_the_profile(
    ingest: httpx.AsyncClient, kafka_settings: KafkaSettings
) -> None:
    await create_agency(ingest, "county")
    url = "/v1/admin/agencies/county/resources"
    assert (await ingest.put(url, json=RESOURCES)).status_code == 401
    two_hotlines = {"contacts": [RESOURCES["contacts"][0], RESOURCES["contacts"][0]]}
    refused = await ingest.put(url, json=two_hotlines, headers=ADMIN)
    assert refused.status_code == 422
    assert "at most one contact with role 'hotline'" in refused.text
    bad_url = {"referrals": [RESOURCES["referrals"][0] | {"url": "not a url"}]}
    assert (await ingest.put(url, json=bad_url, headers=ADMIN)).status_code == 422
    assert (await ingest.put("/v1/admin/agencies/nowhere/resources", json=RESOURCES, headers=ADMIN)).status_code == 404
    saved = await ingest.put(url, json=RESOURCES, headers=ADMIN)
    assert saved.status_code == 200, saved.text
    assert saved.json()["resources"]["contacts"][0]["name"] == "Victim line"
    reminders = await ingest.patch(
        "/v1/admin/agencies/county", json={"reminders": {"release_days_before": [7, 1]}}, headers=ADMIN
    )
    assert reminders.status_code == 200, reminders.text
    assert (await ingest.patch("/v1/admin/agencies/county", json={"reminders": None}, headers=ADMIN)).status_code == 422

    messages = await read_exactly(kafka_settings, kafka_settings.topic(AGENCY_PROFILE.name), 3)
    profile = decode(messages[-1].value).data
    assert isinstance(profile, AgencyProfile)
    assert profile.resources.hotline is not None
    assert profile.resources.hotline.phone == "+15125550100"
    assert profile.resources.referrals[0].url == "https://safe.example/"
    assert profile.reminders.release_days_before == [7, 1]
