"""A dead letter of the subscription consumer, replayed from the dashboard, changes the state once."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.ops.pipeline.domain import AlreadyReplayedError
from services.subscription.consumers import CONSUMER_GROUP
from shared.events import ContactPointDisabled
from shared.topics import CONTACT_POINT_DISABLED
from shared.vocabulary import Channel
from tests.matching.helpers import dead_letter_again, dead_letters, ops_replays
from tests.subscription.conftest import Harness

pytestmark = pytest.mark.integration

# A fault that depends on the message, as a bug would (not an outage: those are waited for, never dead-lettered).
REFUSE_CHANGES = """
CREATE FUNCTION refuse_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'subscription changes refused by the test'; END $$;
CREATE TRIGGER refuse_changes BEFORE UPDATE ON subscriptions FOR EACH ROW EXECUTE FUNCTION refuse_changes();
"""
FIXED = "DROP TRIGGER refuse_changes ON subscriptions; DROP FUNCTION refuse_changes();"


async def test_a_replayed_contact_disable_is_applied_once_however_often_it_is_replayed(
    harness: Harness, unique: str, postgres_admin_dsn: str
) -> None:
    created = await harness.subscribe(sms="+14155552671", email="victim.replay@example.org")
    subscription_id = created["subscription_id"]
    disabled = ContactPointDisabled(
        subscription_id=subscription_id, channel=Channel.EMAIL, reason="hard_bounce", at=datetime.now(UTC)
    )
    async with ops_replays(postgres_admin_dsn, unique, harness.kafka, CONSUMER_GROUP) as replay:
        await harness.pool.execute(REFUSE_CHANGES)
        event = await harness.publish(CONTACT_POINT_DISABLED.name, subscription_id, disabled)
        [letter] = await dead_letters(harness.kafka, CONSUMER_GROUP, 1)
        assert not await harness.pool.fetchval("SELECT count(*) FROM processed_events WHERE event_id = $1", event.id)
        assert max(s.version for s in await harness.states(subscription_id, min_version=1)) == 1

        await harness.pool.execute(FIXED)
        await replay(letter)
        await harness.wait_for(
            "SELECT true FROM contact_points WHERE subscription_id = $1 AND channel = 'email' AND NOT active",
            subscription_id,
            what="the replayed disable applied",
        )
        [state] = [s for s in await harness.states(subscription_id, min_version=2) if s.version == 2]
        assert {c.channel: c.active for c in state.contacts} == {Channel.SMS: True, Channel.EMAIL: False}

        with pytest.raises(AlreadyReplayedError):
            await replay(letter)
        # The same event dead-lettered a second time, and that letter replayed too, then a marker on the same key
        # (so the same partition, after it): once the marker is applied, so was the second replay, without effect.
        await dead_letter_again(harness.kafka, letter)
        [_, second] = await dead_letters(harness.kafka, CONSUMER_GROUP, 2)
        await replay(second)
        marker = await harness.publish(
            CONTACT_POINT_DISABLED.name,
            subscription_id,
            ContactPointDisabled(subscription_id="unknown", channel=Channel.SMS, reason="opted_out", at=disabled.at),
        )
        await harness.wait_for(
            "SELECT true FROM processed_events WHERE event_id = $1", marker.id, what="the marker event consumed"
        )
        assert max(s.version for s in await harness.states(subscription_id, min_version=2)) == 2
