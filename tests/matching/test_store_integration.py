"""Matching's SQL against a real PostgreSQL: claims, version checks, identifiers, sealing, pruning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.matching import domain
from services.matching.store import handled_events, notifications, retention, subjects, subscriptions
from services.matching.store.handled_events import SourcePosition
from shared.db import apply_migrations
from shared.events import SubjectIdentifier
from shared.vocabulary import CustodyStatus, IdentifierKind
from tests.matching.factories import BASE_TIME, change, subscription

pytestmark = pytest.mark.integration

BOOKING = SubjectIdentifier(kind=IdentifierKind.BOOKING_NUMBER, value="B-1")
PERSON = SubjectIdentifier(kind=IdentifierKind.PERSON_NUMBER, value="P-1")


@pytest.fixture
async def migrated(pool: asyncpg.Pool) -> asyncpg.Pool:
    await apply_migrations(pool, ["shared", "services.matching"])
    return pool


async def test_claim_tells_a_replay_from_a_duplicate(migrated: asyncpg.Pool) -> None:
    first = SourcePosition(topic="custody", partition=2, offset=40)
    async with migrated.acquire() as connection:
        assert await handled_events.claim_event(connection, "event-1", first) is None
        assert await handled_events.claim_event(connection, "event-1", first) == first
        assert (
            await handled_events.claim_event(
                connection, "event-1", SourcePosition(topic="custody", partition=2, offset=41)
            )
            == first
        )


async def test_only_a_newer_subscription_version_is_stored(migrated: asyncpg.Pool) -> None:
    async with migrated.acquire() as connection:
        await subscriptions.save_subscription(connection, subscription("sub-1", version=2))
        await subscriptions.save_subscription(connection, subscription("sub-1", status="cancelled", version=1))
        stored = await subscriptions.load_subscription(connection, "sub-1")
        assert stored is not None
        assert (stored.version, stored.status) == (2, "active")
        key = domain.case_key("agency-a", SubjectIdentifier(kind=IdentifierKind.BOOKING_NUMBER, value="b-1"))
        assert [s.subscription_id for s in await subscriptions.active_subscriptions_for(connection, [key])] == ["sub-1"]


async def test_latest_state_and_identifiers_accumulate_until_sealed(migrated: asyncpg.Pool) -> None:
    newer = change("s-1", identifiers=[PERSON, BOOKING], sequence=2)
    async with migrated.acquire() as connection, connection.transaction():
        assert await subjects.lock_subject(connection, "agency-a", "s-1") == subjects.SubjectHistory(None, None)
        await subjects.record_custody_change(connection, "e-2", newer, newest=True)
        history = await subjects.lock_subject(connection, "agency-a", "s-1")
        assert history.newest == domain.change_position("e-2", newer)
        # An older change arriving late adds nothing to the state, but its identifiers are still learnt.
        late = SubjectIdentifier(kind=IdentifierKind.CASE_NUMBER, value="CR-9")
        older = change("s-1", status=CustodyStatus.IN_CUSTODY, identifiers=[late], sequence=1)
        keys = await subjects.record_custody_change(connection, "e-1", older, newest=False)
        await subjects.record_stale_change(connection, "e-1", older, "e-2")
        assert {key[1] for key in keys} == set(IdentifierKind)
        [state] = await subjects.known_states_for(connection, domain.case_key("agency-a", late))
        assert state.custody_event_id == "e-2"
        assert await connection.fetchval("SELECT newest_event_id FROM stale_custody_changes") == "e-2"

        await subjects.seal_subject(connection, "agency-a", "s-1", BASE_TIME + timedelta(hours=1))
        assert await subjects.known_states_for(connection, domain.case_key("agency-a", BOOKING)) == []
        assert await subjects.lock_subject(connection, "agency-a", "s-1") == subjects.SubjectHistory(
            None, BASE_TIME + timedelta(hours=1)
        )


async def test_prune_forgets_only_old_rows(migrated: asyncpg.Pool) -> None:
    notices = domain.status_change_notices("e-1", change(), [subscription("sub-1")], BASE_TIME)
    async with migrated.acquire() as connection:
        await handled_events.claim_event(connection, "e-1", SourcePosition(topic="custody", partition=0, offset=0))
        recorded = await notifications.record_notifications(connection, "e-1", [(n, b"{}") for n in notices])
        assert len(recorded) == 2
        assert await notifications.record_notifications(connection, "e-1", [(n, b"{}") for n in notices]) == []
        assert await retention.prune(connection, datetime.now(UTC) - timedelta(days=1)) == 0
        assert await retention.prune(connection, datetime.now(UTC) + timedelta(seconds=1)) == 3
        assert await notifications.notifications_caused_by(connection, "e-1") == []
