"""A person transferred to another participating agency and booked there under the same person number: the
subscription follows, told once in words, then gets that agency's notices; another number does not match."""

from __future__ import annotations

import asyncpg
import pytest

from services.matching.app import create_app
from shared.envelope import encode, new_event
from shared.events import AgencyProfile, NotificationKind, SubjectIdentifier
from shared.settings import KafkaSettings
from shared.topics import AGENCY_PROFILE
from shared.vocabulary import CustodyStatus, IdentifierKind, Urgency
from tests.apps import running_app
from tests.kafkautil import produce_raw
from tests.matching.factories import AGENCY, BASE_TIME, change, custody_message, subscription, subscription_message
from tests.matching.helpers import matching_settings, publish_custody, publish_subscriptions, read_notices, wait_until
from tests.matching.test_reminders_integration import fresh, has_rows

pytestmark = pytest.mark.integration

DETENTION = "agency-b"
BOOKING_A = SubjectIdentifier(kind=IdentifierKind.BOOKING_NUMBER, value="B-1")


def person(number: str) -> SubjectIdentifier:
    return SubjectIdentifier(kind=IdentifierKind.PERSON_NUMBER, value=number)


async def test_a_subscription_follows_a_person_booked_by_the_agency_they_were_transferred_to(
    database_url: str, pool: asyncpg.Pool, kafka_settings: KafkaSettings, unique: str
) -> None:
    profile = AgencyProfile(
        agency_id=DETENTION, name="Valley Detention", timezone="America/Chicago", updated_at=BASE_TIME
    )
    async with running_app(create_app(matching_settings(database_url, kafka_settings, unique))):
        await produce_raw(
            kafka_settings,
            kafka_settings.topic(AGENCY_PROFILE.name),
            [(DETENTION.encode(), encode(new_event(profile, source="/tests")))],
        )
        await publish_subscriptions(kafka_settings, [subscription_message(subscription("sub-a", identifier=BOOKING_A))])
        await wait_until(lambda: has_rows(pool, "SELECT count(*) FROM subscriptions"), what="the subscription")
        at_jail = [BOOKING_A, person("A-123")]
        booked = change("jail-1", status=CustodyStatus.IN_CUSTODY, identifiers=at_jail, sequence=0)
        moved = change("jail-1", status=CustodyStatus.TRANSFERRED, identifiers=at_jail, sequence=1).model_copy(
            update={"transferred_to_agency_id": DETENTION, "transfer_destination": "Valley Detention"}
        )
        await publish_custody(kafka_settings, [custody_message(booked)[:2], custody_message(moved)[:2]])
        seen: set[str] = set()
        assert {n.agency_id for n in fresh(seen, await read_notices(kafka_settings, 4))} == {AGENCY}

        held = [SubjectIdentifier(kind=IdentifierKind.BOOKING_NUMBER, value="ICE-9"), person("a-123")]
        there = change("ice-1", status=CustodyStatus.IN_CUSTODY, identifiers=held, sequence=2, agency_id=DETENTION)
        stranger = change(
            "ice-2", status=CustodyStatus.IN_CUSTODY, identifiers=[person("A-999")], sequence=2, agency_id=DETENTION
        )
        await publish_custody(kafka_settings, [custody_message(there)[:2], custody_message(stranger)[:2]])
        told = fresh(seen, await read_notices(kafka_settings, 6))
        assert {n.kind for n in told} == {NotificationKind.NOW_HELD_BY}
        assert {(n.agency_id, n.now_held_by, n.subscription_id) for n in told} == {
            (DETENTION, "Valley Detention", "sub-a")
        }
        assert all(n.custody is not None and n.custody.identifier == BOOKING_A for n in told)  # the victim's own number

        released = change("ice-1", status=CustodyStatus.RELEASED, identifiers=held, sequence=3, agency_id=DETENTION)
        again = change(
            "ice-1", status=CustodyStatus.RETURNED_TO_CUSTODY, identifiers=held, sequence=4, agency_id=DETENTION
        )
        await publish_custody(kafka_settings, [custody_message(released)[:2], custody_message(again)[:2]])
        later = fresh(seen, await read_notices(kafka_settings, 10))
        assert sorted((n.kind, n.custody.status if n.custody else None) for n in later) == sorted(
            [(NotificationKind.STATUS_CHANGE, CustodyStatus.RELEASED)] * 2
            + [(NotificationKind.STATUS_CHANGE, CustodyStatus.RETURNED_TO_CUSTODY)] * 2
        )  # told once that it moved: a re-booking is a plain status change
        assert {n.agency_id for n in later} == {DETENTION}
        assert {n.urgency for n in later if n.custody and n.custody.status is CustodyStatus.RELEASED} == {
            Urgency.URGENT
        }
