"""The case information and custody history the subscription service keeps from custody events: newest case
information, every accepted change, nothing for a sealed subject, also for a change read after the seal."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.subscription.store.custody import case_file
from shared.events import CaseInformation, Charge, SubjectIdentifier, SubjectSealed
from shared.topics import CUSTODY_STATUS_CHANGED, SUBJECT_SEALED
from shared.vocabulary import CustodyStatus, IdentifierKind, ImmigrationStage
from tests.subscription.conftest import AGENCY_ID, Harness
from tests.subscription.test_lookup_integration import T0, change

pytestmark = pytest.mark.integration

BOOKING = (IdentifierKind.BOOKING_NUMBER, "B-7")
BY_BOOKING = SubjectIdentifier(kind=IdentifierKind.BOOKING_NUMBER, value="b-7")


async def test_history_newest_first_case_information_of_the_newest_change_and_nothing_once_sealed(
    harness: Harness,
) -> None:
    key = f"{AGENCY_ID}/s-7"
    case = CaseInformation(charges=[Charge(description="Assault")], immigration_stage=ImmigrationStage.REMOVED)
    booked = change("s-7", CustodyStatus.IN_CUSTODY, T0, BOOKING).model_copy(update={"case": case})
    await harness.publish(CUSTODY_STATUS_CHANGED.name, key, booked)
    moved = case.model_copy(update={"hold_reason": "Immigration detainer"})
    update = change("s-7", CustodyStatus.IN_CUSTODY, T0 + timedelta(hours=1), BOOKING).model_copy(
        update={"case": moved, "case_information_only": True, "agency_record_id": "s-7-update"}
    )
    await harness.publish(CUSTODY_STATUS_CHANGED.name, key, update)
    released = await harness.publish(
        CUSTODY_STATUS_CHANGED.name,
        key,
        change("s-7", CustodyStatus.RELEASED, T0 + timedelta(days=1), BOOKING).model_copy(update={"case": moved}),
    )
    await harness.wait_for("SELECT true FROM processed_events WHERE event_id = $1", released.id, what="release")
    async with harness.pool.acquire() as connection:
        found = await case_file(connection, AGENCY_ID, BY_BOOKING)
    assert found is not None
    assert [entry.status for entry in found.history] == [CustodyStatus.RELEASED, CustodyStatus.IN_CUSTODY]
    assert found.case == moved

    sealed = await harness.publish(
        SUBJECT_SEALED.name,
        key,
        SubjectSealed(
            agency_id=AGENCY_ID, subject_id="s-7", identifiers=[BY_BOOKING], sealed_at=T0 + timedelta(days=2)
        ),
    )
    late = await harness.publish(
        CUSTODY_STATUS_CHANGED.name,
        key,
        change("s-7", CustodyStatus.RETURNED_TO_CUSTODY, T0 + timedelta(days=3), BOOKING),
    )
    for event in (sealed, late):
        await harness.wait_for("SELECT true FROM processed_events WHERE event_id = $1", event.id, what="seal")
    async with harness.pool.acquire() as connection:
        assert await case_file(connection, AGENCY_ID, BY_BOOKING) is None
        kept = await connection.fetchval("SELECT count(*) FROM custody_history WHERE subject_id = 's-7'")
        assert kept == 0
