"""Matching in-process against real Kafka and PostgreSQL: fan-out, filters, identifiers, current status, bad input."""

from __future__ import annotations

import collections
import json
from datetime import timedelta

import asyncpg
import pytest
from prometheus_client import REGISTRY

from services.matching import domain
from services.matching.app import create_app
from shared.envelope import encode, new_event
from shared.events import NotificationKind, SubjectIdentifier
from shared.kafka.records import H_ERROR, header
from shared.settings import DEV_OPERATOR_TOKEN, KafkaSettings
from shared.topics import CUSTODY_STATUS_CHANGED, dead_letter_topic
from shared.vocabulary import Channel, CustodyStatus, IdentifierKind, Urgency
from tests.apps import running_app
from tests.kafkautil import produce_raw, read_topic
from tests.matching.factories import (
    BASE_TIME,
    change,
    contact,
    custody_message,
    sealed,
    subscription,
    subscription_message,
)
from tests.matching.helpers import (
    matching_settings,
    publish_custody,
    publish_sealed,
    publish_subscriptions,
    read_notices,
    wait_until,
)

pytestmark = pytest.mark.integration

BOOKING = SubjectIdentifier(kind=IdentifierKind.BOOKING_NUMBER, value="B-1")
PERSON = SubjectIdentifier(kind=IdentifierKind.PERSON_NUMBER, value="P-77")

OPERATOR = {"Authorization": f"Bearer {DEV_OPERATOR_TOKEN}"}


async def count(pool: asyncpg.Pool, sql: str) -> int:
    value = await pool.fetchval(sql)
    return int(value)


async def handled(pool: asyncpg.Pool, n: int) -> None:
    """Wait until matching applied ``n`` events (so the next ones are ordered after them)."""

    async def done() -> bool:
        return await count(pool, "SELECT count(*) FROM handled_events") >= n

    await wait_until(done, what=f"{n} handled events")


async def test_fan_out_to_every_reachable_subscriber_and_no_one_else(
    database_url: str, pool: asyncpg.Pool, kafka_settings: KafkaSettings, unique: str
) -> None:
    reachable = [subscription(f"sub-{n}") for n in range(5)]
    unreachable = [
        subscription("pending", status="pending"),
        subscription("cancelled", status="cancelled"),
        subscription("unverified", contacts=[contact(Channel.SMS, verified=False)]),
        subscription("stopped", contacts=[contact(Channel.SMS, active=False)]),
        subscription("transfers-only", event_types=[CustodyStatus.TRANSFERRED]),
        subscription("other-case", identifier=PERSON),
        subscription("other-agency", agency_id="agency-b"),
    ]
    app = create_app(matching_settings(database_url, kafka_settings, unique))
    async with running_app(app) as client:
        await publish_subscriptions(kafka_settings, [subscription_message(s) for s in reachable + unreachable])
        await handled(pool, 12)
        key, value, event_id = custody_message(change(status=CustodyStatus.RELEASED, identifiers=[BOOKING]))
        await publish_custody(kafka_settings, [(key, value)])

        notices = await read_notices(kafka_settings, 10)

        expected = {
            domain.status_change_notification_id(event_id, sub.subscription_id, channel)
            for sub in reachable
            for channel in (Channel.SMS, Channel.EMAIL)
        }
        assert {n.notification_id for n in notices} == expected
        assert all(n.kind == NotificationKind.STATUS_CHANGE and n.urgency == Urgency.URGENT for n in notices)
        assert all(n.custody is not None and n.custody.custody_event_id == event_id for n in notices)
        for notice in notices:
            assert notice.contact_ciphertext == f"gAAAA-{notice.channel}-{notice.subscription_id}"
            assert notice.manage_url_ciphertext == f"gAAAA-manage-{notice.subscription_id}"

        stats = (await client.get("/v1/matching/stats", headers=OPERATOR)).json()
        # Every notified contact is reachable; others may be too (reachable, but not wanting this event type).
        assert stats.pop("reachable_contacts") >= len(expected)
        assert stats == {
            "active_subscriptions": 10,
            "subjects_with_status": 1,
            "sealed_subjects": 0,
            "notification_requests": 10,
        }
        assert (await client.get("/readyz")).status_code == 200


async def test_cancelled_and_stopped_after_verification_get_nothing_more(
    database_url: str, pool: asyncpg.Pool, kafka_settings: KafkaSettings, unique: str
) -> None:
    app = create_app(matching_settings(database_url, kafka_settings, unique))
    async with running_app(app):
        await publish_subscriptions(
            kafka_settings,
            [
                subscription_message(subscription("to-cancel", version=1)),
                subscription_message(subscription("to-cancel", status="cancelled", version=2)),
                subscription_message(subscription("to-stop", version=1)),
                subscription_message(
                    subscription(
                        "to-stop", contacts=[contact(Channel.SMS, active=False), contact(Channel.EMAIL)], version=2
                    )
                ),
                # An older version arriving late changes nothing.
                subscription_message(subscription("to-stop", version=1)),
            ],
        )
        await handled(pool, 5)
        key, value, event_id = custody_message(change(identifiers=[BOOKING]))
        await publish_custody(kafka_settings, [(key, value)])
        [notice] = await read_notices(kafka_settings, 1)
        assert (notice.subscription_id, notice.channel) == ("to-stop", Channel.EMAIL)
        assert notice.notification_id == domain.status_change_notification_id(event_id, "to-stop", Channel.EMAIL)


async def test_matches_on_every_identifier_the_agency_sent(
    database_url: str, pool: asyncpg.Pool, kafka_settings: KafkaSettings, unique: str
) -> None:
    by_booking = subscription(
        "by-booking", identifier=SubjectIdentifier(kind=IdentifierKind.BOOKING_NUMBER, value=" b-1 ")
    )
    by_person = subscription("by-person", identifier=PERSON, contacts=[contact(Channel.SMS)])
    app = create_app(matching_settings(database_url, kafka_settings, unique))
    async with running_app(app):
        # Both subscribe before the agency has sent anything about the subject.
        await publish_subscriptions(kafka_settings, [subscription_message(by_booking), subscription_message(by_person)])
        await handled(pool, 2)
        booked = custody_message(change("s-1", status=CustodyStatus.IN_CUSTODY, identifiers=[PERSON], sequence=0))
        with_booking = custody_message(
            change("s-1", status=CustodyStatus.TRANSFERRED, identifiers=[PERSON, BOOKING], sequence=1)
        )
        person_only = custody_message(change("s-1", status=CustodyStatus.RELEASED, identifiers=[PERSON], sequence=2))
        await publish_custody(kafka_settings, [m[:2] for m in (booked, with_booking, person_only)])

        notices = await read_notices(kafka_settings, 1 + 3 + 3)
        got = collections.Counter((n.subscription_id, n.custody.custody_event_id) for n in notices if n.custody)
        assert got == {
            ("by-person", booked[2]): 1,
            ("by-person", with_booking[2]): 1,
            ("by-person", person_only[2]): 1,
            # The booking number was learnt with the transfer; the release, sent under the person number, still
            # reaches the subscriber who only knows the booking number.
            ("by-booking", with_booking[2]): 2,
            ("by-booking", person_only[2]): 2,
        }
        assert {n.custody.identifier.value for n in notices if n.custody and n.subscription_id == "by-booking"} == {
            " b-1 "
        }


async def test_current_status_notice_once_when_a_subscription_is_verified_after_a_change(
    database_url: str, pool: asyncpg.Pool, kafka_settings: KafkaSettings, unique: str
) -> None:
    app = create_app(matching_settings(database_url, kafka_settings, unique))
    async with running_app(app):
        older = custody_message(change("s-1", status=CustodyStatus.IN_CUSTODY, identifiers=[BOOKING], sequence=0))
        latest = custody_message(change("s-1", status=CustodyStatus.RELEASED, identifiers=[BOOKING], sequence=5))
        await publish_custody(kafka_settings, [older[:2], latest[:2]])
        await handled(pool, 2)

        pending = subscription("late", status="pending", contacts=[contact(Channel.SMS, verified=False)])
        verified = subscription("late", contacts=[contact(Channel.SMS)], version=2)
        verified_message = subscription_message(verified)
        email_added = subscription("late", contacts=[contact(Channel.SMS), contact(Channel.EMAIL)], version=3)
        await publish_subscriptions(
            kafka_settings,
            [
                subscription_message(pending),
                verified_message,
                verified_message,  # redelivered by an at-least-once relay: the same event again
                subscription_message(email_added),
            ],
        )
        notices = await read_notices(kafka_settings, 2)
        assert {(n.kind, n.channel) for n in notices} == {
            (NotificationKind.CURRENT_STATUS, Channel.SMS),
            (NotificationKind.CURRENT_STATUS, Channel.EMAIL),
        }
        for notice in notices:
            assert notice.custody is not None
            assert notice.custody.custody_event_id == latest[2]
            assert notice.custody.status == CustodyStatus.RELEASED
            assert notice.urgency == Urgency.URGENT
            assert notice.notification_id == domain.current_status_notification_id("late", latest[2], notice.channel)

        # The next change reaches the new subscriber as an ordinary status change.
        returned = custody_message(
            change("s-1", status=CustodyStatus.RETURNED_TO_CUSTODY, identifiers=[BOOKING], sequence=9)
        )
        await publish_custody(kafka_settings, [returned[:2]])
        notices = await read_notices(kafka_settings, 4)
        assert collections.Counter(n.kind for n in notices) == {
            NotificationKind.CURRENT_STATUS: 2,
            NotificationKind.STATUS_CHANGE: 2,
        }


async def test_sealed_subject_discloses_nothing_afterwards(
    database_url: str, pool: asyncpg.Pool, kafka_settings: KafkaSettings, unique: str
) -> None:
    app = create_app(matching_settings(database_url, kafka_settings, unique))
    async with running_app(app) as client:
        booked = custody_message(change("s-1", status=CustodyStatus.IN_CUSTODY, identifiers=[BOOKING], sequence=0))
        await publish_custody(kafka_settings, [booked[:2]])
        await handled(pool, 1)
        key, value, _ = custody_message(sealed("s-1", [BOOKING], BASE_TIME + timedelta(minutes=3)))
        await publish_sealed(kafka_settings, [(key, value)])
        await handled(pool, 2)
        # A change from before the sealing, arriving late, is not disclosed either.
        stale = custody_message(change("s-1", status=CustodyStatus.RELEASED, identifiers=[BOOKING], sequence=2))
        await publish_custody(kafka_settings, [stale[:2]])
        await handled(pool, 3)
        await publish_subscriptions(kafka_settings, [subscription_message(subscription("after-seal"))])
        await handled(pool, 4)
        await read_notices(kafka_settings, 0)
        stats = (await client.get("/v1/matching/stats", headers=OPERATOR)).json()
        assert stats["subjects_with_status"] == 0
        assert stats["sealed_subjects"] == 1


async def test_bad_input_goes_to_the_dead_letter_topic_and_the_partition_flows_on(
    database_url: str, pool: asyncpg.Pool, kafka_settings: KafkaSettings, unique: str
) -> None:
    settings = matching_settings(database_url, kafka_settings, unique)
    app = create_app(settings)
    unmatched_before = REGISTRY.get_sample_value("cw_matching_unmatched_total") or 0.0
    async with running_app(app):
        await publish_subscriptions(kafka_settings, [subscription_message(subscription("sub-1"))])
        await handled(pool, 1)
        good = change("s-1", identifiers=[BOOKING])
        document = json.loads(encode(new_event(good, source="/tests/ingest")))
        future_version = {**document, "type": "org.custodywatch.custody.status-changed.v2"}
        missing_field = {**document, "data": {k: v for k, v in document["data"].items() if k != "status"}}
        unknown_case = custody_message(change("s-2", identifiers=[PERSON]))
        valid = custody_message(good)
        key = b"agency-a/s-1"
        # All on one partition (one key), bad ones first: the valid event behind them must still be matched.
        await produce_raw(
            kafka_settings,
            kafka_settings.topic(CUSTODY_STATUS_CHANGED.name),
            [
                (key, b"not json"),
                (key, json.dumps(future_version).encode()),
                (key, json.dumps(missing_field).encode()),
                (key, unknown_case[1]),
                (key, valid[1]),
            ],
        )
        notices = await read_notices(kafka_settings, 2)
        assert {n.custody.custody_event_id for n in notices if n.custody} == {valid[2]}

        dead = await read_topic(
            kafka_settings,
            kafka_settings.topic(dead_letter_topic(settings.consumer_group)),
            until=lambda records: len(records) >= 3,
        )
        reasons = [header(record, H_ERROR) or "" for record in dead]
        assert "not JSON" in reasons[0]
        assert "unknown event type or schema version" in reasons[1]
        assert "status" in reasons[2]
        # The change for a case nobody follows is kept (a later subscriber gets its current status) and counted.
        assert await count(pool, "SELECT count(*) FROM custody_subjects WHERE subject_id = 's-2'") == 1
        assert REGISTRY.get_sample_value("cw_matching_unmatched_total") == unmatched_before + 1
