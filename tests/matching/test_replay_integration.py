"""A dead letter replayed from the dashboard does what the original would have done, once."""

from __future__ import annotations

import asyncpg
import pytest
from prometheus_client import REGISTRY

from services.matching import domain
from services.matching.app import create_app
from services.ops.pipeline.domain import AlreadyReplayedError
from shared.events import SubjectIdentifier
from shared.settings import KafkaSettings
from shared.vocabulary import Channel, CustodyStatus, IdentifierKind
from tests.apps import running_app
from tests.matching.factories import change, custody_message, subscription, subscription_message
from tests.matching.helpers import (
    dead_letter_again,
    dead_letters,
    matching_settings,
    ops_replays,
    publish_custody,
    publish_subscriptions,
    read_notices,
    wait_until,
)

pytestmark = pytest.mark.integration

BOOKING = SubjectIdentifier(kind=IdentifierKind.BOOKING_NUMBER, value="B-1")

# A fault that depends on the message, as a bug would (not an outage: those are waited for, never dead-lettered).
REFUSE_NOTICES = """
CREATE FUNCTION refuse_notices() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'notices refused by the test'; END $$;
CREATE TRIGGER refuse_notices BEFORE INSERT ON notification_requests FOR EACH ROW EXECUTE FUNCTION refuse_notices();
"""
FIXED = "DROP TRIGGER refuse_notices ON notification_requests; DROP FUNCTION refuse_notices();"


def duplicates_skipped() -> float:
    return REGISTRY.get_sample_value("cw_matching_skipped_total", {"reason": "duplicate_event"}) or 0.0


async def test_a_replayed_dead_letter_sends_its_notices_once_however_often_it_is_replayed(
    database_url: str, pool: asyncpg.Pool, kafka_settings: KafkaSettings, unique: str, postgres_admin_dsn: str
) -> None:
    settings = matching_settings(database_url, kafka_settings, unique)
    released = custody_message(change("s-1", status=CustodyStatus.RELEASED, identifiers=[BOOKING]))
    async with (
        running_app(create_app(settings)),
        ops_replays(postgres_admin_dsn, unique, kafka_settings, settings.consumer_group) as replay,
    ):
        await publish_subscriptions(kafka_settings, [subscription_message(subscription("sub-1"))])

        async def subscribed() -> bool:
            return bool(await pool.fetchval("SELECT count(*) FROM subscriptions"))

        await wait_until(subscribed, what="the subscription")
        await pool.execute(REFUSE_NOTICES)
        await publish_custody(kafka_settings, [released[:2]])
        [letter] = await dead_letters(kafka_settings, settings.consumer_group, 1)
        await read_notices(kafka_settings, 0)
        assert not await pool.fetchval("SELECT count(*) FROM handled_events WHERE event_id = $1", released[2])

        await pool.execute(FIXED)
        await replay(letter)
        notices = await read_notices(kafka_settings, 2)
        assert {n.notification_id for n in notices} == {
            domain.status_change_notification_id(released[2], "sub-1", channel)
            for channel in (Channel.SMS, Channel.EMAIL)
        }

        with pytest.raises(AlreadyReplayedError):
            await replay(letter)
        # The same event dead-lettered a second time, and that letter replayed too: still the notices once.
        skipped_before = duplicates_skipped()
        await dead_letter_again(kafka_settings, letter)
        [_, second] = await dead_letters(kafka_settings, settings.consumer_group, 2)
        await replay(second)

        async def second_replay_consumed() -> bool:
            return duplicates_skipped() > skipped_before

        await wait_until(second_replay_consumed, what="the second replay consumed")
        await read_notices(kafka_settings, 2)
