"""The latest state of every subscription (from ``subscription.state``), found by its case identifier."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.matching.domain import CaseKey, case_key
from shared.db import Connection
from shared.events import SubscriptionState


async def load_subscription(connection: Connection, subscription_id: str) -> SubscriptionState | None:
    """The stored state, locked until the transaction ends so two versions never race."""
    state: Any = await connection.fetchval(
        "SELECT state FROM subscriptions WHERE subscription_id = $1 FOR UPDATE", subscription_id
    )
    return None if state is None else SubscriptionState.model_validate(state)


async def load_subscriptions(connection: Connection, subscription_ids: Sequence[str]) -> dict[str, SubscriptionState]:
    rows = await connection.fetch(
        "SELECT subscription_id, state FROM subscriptions WHERE subscription_id = ANY($1::text[])",
        list(subscription_ids),
    )
    return {row["subscription_id"]: SubscriptionState.model_validate(row["state"]) for row in rows}


async def save_subscription(connection: Connection, state: SubscriptionState) -> None:
    agency_id, kind, value = case_key(state.agency_id, state.identifier)
    await connection.execute(
        "INSERT INTO subscriptions"
        " (subscription_id, agency_id, identifier_kind, identifier_value, status, version, state, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, now())"
        " ON CONFLICT (subscription_id) DO UPDATE SET agency_id = EXCLUDED.agency_id,"
        "  identifier_kind = EXCLUDED.identifier_kind, identifier_value = EXCLUDED.identifier_value,"
        "  status = EXCLUDED.status, version = EXCLUDED.version, state = EXCLUDED.state, updated_at = now()"
        " WHERE subscriptions.version < EXCLUDED.version",
        state.subscription_id,
        agency_id,
        str(kind),
        value,
        state.status,
        state.version,
        state.model_dump(mode="json"),
    )


async def active_subscriptions_for(connection: Connection, keys: Sequence[CaseKey]) -> list[SubscriptionState]:
    """Active subscriptions on any of ``keys`` (one subscription once, even if it matches several)."""
    if not keys:
        return []
    rows = await connection.fetch(
        "SELECT DISTINCT s.subscription_id, s.state FROM subscriptions s"
        " JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(agency_id, kind, value)"
        "   ON s.agency_id = k.agency_id AND s.identifier_kind = k.kind AND s.identifier_value = k.value"
        " WHERE s.status = 'active' ORDER BY s.subscription_id",
        [key[0] for key in keys],
        [str(key[1]) for key in keys],
        [key[2] for key in keys],
    )
    return [SubscriptionState.model_validate(row["state"]) for row in rows]


async def subscriptions_told(connection: Connection, about: str) -> list[SubscriptionState]:
    """The active subscriptions that were sent a notice about ``about`` (see :func:`record_notifications`)."""
    rows = await connection.fetch(
        "SELECT s.state FROM subscriptions s WHERE s.status = 'active' AND s.subscription_id IN"
        " (SELECT subscription_id FROM notification_requests WHERE custody_event_id = $1)"
        " ORDER BY s.subscription_id",
        about,
    )
    return [SubscriptionState.model_validate(row["state"]) for row in rows]
