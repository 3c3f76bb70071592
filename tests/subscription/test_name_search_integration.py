"""Search by name, where an agency allows it: held now or released in the last 30 days, never sealed, at most ten,
the same rate limit as the lookup; through the JSON API and the portal."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import pytest

from shared.events import AgencyProfile, SubjectIdentifier, SubjectSealed
from shared.topics import AGENCY_PROFILE, CUSTODY_STATUS_CHANGED, SUBJECT_SEALED
from shared.vocabulary import CustodyStatus, IdentifierKind
from tests.subscription.conftest import AGENCY_ID, Harness
from tests.subscription.test_lookup_integration import change
from tests.subscription.test_portal_integration import csrf_token

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)
PEOPLE = "/v1/agencies/{agency}/people"


async def allow_name_search(harness: Harness, allowed: bool) -> None:
    profile = AgencyProfile(
        agency_id=AGENCY_ID,
        name="Cook County Jail",
        timezone="America/Chicago",
        public_name_search=allowed,
        updated_at=datetime.now(UTC),
    )
    await harness.publish(AGENCY_PROFILE.name, AGENCY_ID, profile)
    await harness.wait_for(
        "SELECT true FROM agencies WHERE agency_id = $1 AND public_name_search = $2", AGENCY_ID, allowed, what="flag"
    )


async def held(harness: Harness, subject: str, name: str, status: CustodyStatus, at: datetime) -> None:
    event = change(
        subject,
        status,
        at,
        (IdentifierKind.CASE_NUMBER, f"CR-{subject}"),
        (IdentifierKind.BOOKING_NUMBER, f"B-{subject}"),
    )
    await harness.publish(
        CUSTODY_STATUS_CHANGED.name, f"{AGENCY_ID}/{subject}", event.model_copy(update={"display_name": name})
    )


async def test_only_people_held_now_or_lately_released_and_never_sealed(harness: Harness) -> None:
    url = PEOPLE.format(agency=AGENCY_ID)
    query = {"last_name": "perez", "first_name": "JOSE"}
    assert (await harness.client.get(url, params=query)).status_code == 404, "off by default"
    await allow_name_search(harness, True)
    await held(harness, "n-1", "Pérez, José", CustodyStatus.IN_CUSTODY, NOW - timedelta(days=3))
    await held(harness, "n-2", "José Luis Perez", CustodyStatus.RELEASED, NOW - timedelta(days=5))
    await held(harness, "n-3", "Jose Perez", CustodyStatus.RELEASED, NOW - timedelta(days=45))
    await held(harness, "n-4", "Jose Perez-Gomez", CustodyStatus.ESCAPED, NOW - timedelta(days=1))
    await held(harness, "n-5", "José Pérez", CustodyStatus.TRANSFERRED, NOW - timedelta(days=1))
    await held(harness, "n-6", "Maria Perez", CustodyStatus.IN_CUSTODY, NOW - timedelta(days=1))
    sealed = SubjectSealed(
        agency_id=AGENCY_ID,
        subject_id="n-5",
        identifiers=[SubjectIdentifier(kind=IdentifierKind.BOOKING_NUMBER, value="B-n-5")],
        sealed_at=NOW,
    )
    await harness.publish(SUBJECT_SEALED.name, f"{AGENCY_ID}/n-5", sealed)
    await harness.wait_for("SELECT sealed FROM custody_subjects WHERE subject_id = 'n-5'", what="seal")
    await harness.wait_for("SELECT count(*) = 6 FROM custody_subjects", what="people")

    found = (await harness.client.get(url, params=query)).json()["people"]
    assert [(p["display_name"], p["identifier"]) for p in found] == [
        ("José Luis Perez", {"kind": "booking_number", "value": "B-N-2"}),
        ("Pérez, José", {"kind": "booking_number", "value": "B-N-1"}),
    ]
    assert (await harness.client.get(url, params={"last_name": "--", "first_name": "jose"})).status_code == 422

    page = await harness.client.post(
        "/find/name",
        data={"csrf_token": await csrf_token(harness.client, "/find/name"), "agency_id": AGENCY_ID, **query},
    )
    assert page.headers["location"] == "/find/name/results"
    results = await harness.client.get("/find/name/results")
    assert "Pérez, José" in results.text
    assert "Maria" not in results.text
    choose = re.search(r'action="/find/name/choose".*?name="number" value="([^"]+)"', results.text, re.S)
    assert choose
    chosen = await harness.client.post(
        "/find/name/choose",
        data={
            "csrf_token": await csrf_token(harness.client, "/find/name"),
            "kind": "booking_number",
            "number": choose.group(1),
        },
    )
    assert chosen.headers["location"] == "/register/contact"
    assert (await harness.client.get("/register/contact")).status_code == 200

    await allow_name_search(harness, False)
    assert (await harness.client.get(url, params=query)).status_code == 404


async def test_last_name_and_date_of_birth_find_a_person_without_a_first_name(harness: Harness) -> None:
    url = PEOPLE.format(agency=AGENCY_ID)
    await allow_name_search(harness, True)
    for subject, name, born in (
        ("b-1", "Ana Ruiz", date(1985, 3, 27)),
        ("b-2", "Beatriz Ruiz", date(1990, 1, 2)),
        ("b-3", "Carla Ruiz", None),
    ):
        event = change(
            subject, CustodyStatus.IN_CUSTODY, NOW - timedelta(days=1), (IdentifierKind.BOOKING_NUMBER, f"B-{subject}")
        )
        await harness.publish(
            CUSTODY_STATUS_CHANGED.name,
            f"{AGENCY_ID}/{subject}",
            event.model_copy(update={"display_name": name, "date_of_birth": born}),
        )
    await harness.wait_for("SELECT count(*) = 3 FROM custody_subjects", what="people")

    found = (await harness.client.get(url, params={"last_name": "ruiz", "date_of_birth": "1985-03-27"})).json()
    assert [p["display_name"] for p in found["people"]] == ["Ana Ruiz"]
    assert "1985" not in str(found), "the date of birth finds a person; it is never shown"
    both = await harness.client.get(
        url, params={"last_name": "ruiz", "first_name": "beatriz", "date_of_birth": "1985-03-27"}
    )
    assert both.json()["people"] == [], "a first name and a date of birth must both match"
    assert (await harness.client.get(url, params={"last_name": "ruiz"})).status_code == 422

    form = {"csrf_token": await csrf_token(harness.client, "/find/name"), "agency_id": AGENCY_ID, "last_name": "Ruiz"}
    refused = await harness.client.post(
        "/find/name", data=form | {"birth_day": "31", "birth_month": "2", "birth_year": "1985"}
    )
    assert refused.status_code == 422
    assert "Enter a real date of birth" in refused.text
    page = await harness.client.post(
        "/find/name", data=form | {"birth_day": "27", "birth_month": "3", "birth_year": "1985"}
    )
    assert page.headers["location"] == "/find/name/results"
    results = await harness.client.get("/find/name/results")
    assert "Ana Ruiz" in results.text
    assert "Beatriz" not in results.text
