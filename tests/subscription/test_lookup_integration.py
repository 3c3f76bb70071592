"""The public status lookup: what ingest last said, across all identifiers of a subject; sealed shows nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.events import CustodyStatusChanged, SubjectIdentifier, SubjectSealed
from shared.topics import CUSTODY_STATUS_CHANGED, SUBJECT_SEALED
from shared.vocabulary import CustodyStatus, IdentifierKind
from tests.subscription.conftest import AGENCY_ID, Harness

pytestmark = pytest.mark.integration

NO_INFORMATION = {"detail": "no custody information for this case", "code": "not_found"}
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def change(
    subject: str, status: CustodyStatus, at: datetime, *identifiers: tuple[IdentifierKind, str]
) -> CustodyStatusChanged:
    return CustodyStatusChanged(
        agency_id=AGENCY_ID,
        subject_id=subject,
        identifiers=[SubjectIdentifier(kind=kind, value=value) for kind, value in identifiers],
        facility="Division 9",
        status=status,
        effective_at=at,
        agency_record_id=f"{subject}-{status}",
        feed_batch_id="batch-1",
        received_at=datetime.now(UTC),
    )


def status_url(kind: str, value: str, agency: str = AGENCY_ID) -> str:
    return f"/v1/agencies/{agency}/cases/{kind}/{value}/status"


async def test_lookup_follows_ingest_and_hides_sealed_subjects(harness: Harness) -> None:
    client = harness.client
    assert (await client.get(status_url("case_number", "CR-1"))).json() == NO_INFORMATION
    unknown_agency = await client.get(status_url("case_number", "CR-1", agency="nowhere"))
    assert unknown_agency.status_code == 404
    assert unknown_agency.json()["detail"].startswith("unknown agency")
    assert (await client.get(status_url("ssn", "1"))).status_code == 422

    key = f"{AGENCY_ID}/s-1"
    booking = (IdentifierKind.BOOKING_NUMBER, "B-100")
    await harness.publish(
        CUSTODY_STATUS_CHANGED.name,
        key,
        change("s-1", CustodyStatus.IN_CUSTODY, T0, (IdentifierKind.CASE_NUMBER, "CR-1"), booking),
    )
    await harness.publish(
        CUSTODY_STATUS_CHANGED.name, key, change("s-1", CustodyStatus.RELEASED, T0 + timedelta(days=2), booking)
    )
    # Arrives late, describes an earlier moment: must not overwrite the release.
    late = await harness.publish(
        CUSTODY_STATUS_CHANGED.name, key, change("s-1", CustodyStatus.TRANSFERRED, T0 + timedelta(days=1), booking)
    )
    await harness.wait_for("SELECT true FROM processed_events WHERE event_id = $1", late.id, what="late event")

    for kind, value in (("case_number", "cr-1"), ("booking_number", "B-100"), ("booking_number", "b-100 ")):
        response = await client.get(status_url(kind, value))
        assert response.status_code == 200, (kind, value, response.text)
        body = response.json()
        assert body["status"] == "released"
        assert body["facility"] == "Division 9"
        assert datetime.fromisoformat(body["effective_at"]) == T0 + timedelta(days=2)
    # A subscription for the case is allowed whether or not it is known, and the answer says nothing about others.
    first = await harness.subscribe(sms="+14155552671", identifier={"kind": "case_number", "value": "CR-1"})
    second = await harness.subscribe(sms="+14155552671", identifier={"kind": "case_number", "value": "CR-NEVER-SEEN"})
    assert set(first) == set(second)
    assert first["status"] == second["status"] == "pending"

    sealed = await harness.publish(
        SUBJECT_SEALED.name,
        key,
        SubjectSealed(
            agency_id=AGENCY_ID,
            subject_id="s-1",
            identifiers=[SubjectIdentifier(kind=IdentifierKind.CASE_NUMBER, value="CR-1")],
            sealed_at=datetime.now(UTC),
        ),
    )
    await harness.wait_for("SELECT true FROM processed_events WHERE event_id = $1", sealed.id, what="seal")
    for kind, value in (("case_number", "CR-1"), ("booking_number", "B-100")):
        response = await client.get(status_url(kind, value))
        assert response.status_code == 404
        assert response.json() == NO_INFORMATION, "sealed answers exactly like unknown"
    # Sealing is final: a later change does not bring the subject back.
    after = await harness.publish(
        CUSTODY_STATUS_CHANGED.name, key, change("s-1", CustodyStatus.IN_CUSTODY, T0 + timedelta(days=5), booking)
    )
    await harness.wait_for("SELECT true FROM processed_events WHERE event_id = $1", after.id, what="after seal")
    assert (await client.get(status_url("booking_number", "B-100"))).json() == NO_INFORMATION
