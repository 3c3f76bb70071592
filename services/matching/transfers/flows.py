"""The notices of a custody change to the subscriptions that followed the person here from another agency."""

from __future__ import annotations

from datetime import datetime

from services.matching.store import agencies, subscriptions
from services.matching.transfers import domain, store
from shared.db import Connection
from shared.events import CustodyStatusChanged, NotificationRequested


async def notices_to_followers(
    connection: Connection, custody_event_id: str, change: CustodyStatusChanged, now: datetime
) -> list[NotificationRequested]:
    """A booking of a person another agency transferred here (same person number, within 30 days) carries that
    agency's subscriptions over; every change of the subject then goes to them too."""
    newly: set[str] = set()
    if change.status in domain.BOOKED:
        since = change.effective_at - domain.FOLLOW_WINDOW
        for came_from in await store.transferred_to(connection, change.agency_id, domain.person_numbers(change), since):
            theirs = await subscriptions.active_subscriptions_for(connection, came_from.keys)
            ids = [s.subscription_id for s in theirs if s.agency_id == came_from.agency_id]
            newly |= await store.follow(connection, ids, change.agency_id, change.subject_id, came_from)
    followers = await store.followers_of(connection, change.agency_id, change.subject_id)
    if not followers:
        return []
    profile = await agencies.agency_profile(connection, change.agency_id)
    return domain.follower_notices(
        custody_event_id,
        change,
        followers,
        newly_following=newly,
        agency_name=profile.name if profile else change.agency_id,
        requested_at=now,
    )
