"""A change older than the subject's newest applied one, arriving late, is recorded and notifies nobody."""

from __future__ import annotations

import asyncpg
import pytest
from prometheus_client import REGISTRY

from services.matching.app import create_app
from shared.events import SubjectIdentifier
from shared.settings import KafkaSettings
from shared.vocabulary import CustodyStatus, IdentifierKind
from tests.apps import running_app
from tests.matching.factories import change, custody_message, subscription, subscription_message
from tests.matching.helpers import matching_settings, publish_custody, publish_subscriptions, read_notices, wait_until

pytestmark = pytest.mark.integration

BOOKING = SubjectIdentifier(kind=IdentifierKind.BOOKING_NUMBER, value="B-1")


def stale_count() -> float:
    return REGISTRY.get_sample_value("cw_matching_stale_changes_total") or 0.0


async def handled(pool: asyncpg.Pool, n: int) -> None:
    async def done() -> bool:
        return int(await pool.fetchval("SELECT count(*) FROM handled_events")) >= n

    await wait_until(done, what=f"{n} handled events")


@pytest.mark.parametrize("one_batch", [False, True], ids=["separate-batches", "one-batch"])
async def test_an_older_release_after_a_newer_booking_notifies_nobody(
    database_url: str, pool: asyncpg.Pool, kafka_settings: KafkaSettings, unique: str, one_batch: bool
) -> None:
    booked = custody_message(change("s-1", status=CustodyStatus.IN_CUSTODY, identifiers=[BOOKING], sequence=5))
    released = custody_message(change("s-1", status=CustodyStatus.RELEASED, identifiers=[BOOKING], sequence=1))
    stale_before = stale_count()
    async with running_app(create_app(matching_settings(database_url, kafka_settings, unique))):
        await publish_subscriptions(kafka_settings, [subscription_message(subscription("sub-1"))])
        await handled(pool, 1)
        if one_batch:
            await publish_custody(kafka_settings, [booked[:2], released[:2]])
        else:
            await publish_custody(kafka_settings, [booked[:2]])
            await handled(pool, 2)
            await publish_custody(kafka_settings, [released[:2]])
        await handled(pool, 3)

        notices = await read_notices(kafka_settings, 2)
        assert {n.custody.custody_event_id for n in notices if n.custody} == {booked[2]}
        row = await pool.fetchrow("SELECT custody_event_id, newest_event_id FROM stale_custody_changes")
        assert row is not None
        assert (row["custody_event_id"], row["newest_event_id"]) == (released[2], booked[2])
        assert stale_count() == stale_before + 1
        state = await pool.fetchval("SELECT custody_event_id FROM custody_subjects WHERE subject_id = 's-1'")
        assert state == booked[2]

        # The next newer change notifies as usual.
        escaped = custody_message(change("s-1", status=CustodyStatus.ESCAPED, identifiers=[BOOKING], sequence=9))
        await publish_custody(kafka_settings, [escaped[:2]])
        notices = await read_notices(kafka_settings, 4)
        assert [n.custody.custody_event_id for n in notices if n.custody].count(escaped[2]) == 2
