"""What delivery knows of subscriptions: their latest ``subscription.state.v1``, and contacts a provider disabled."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from services.delivery.domain import ContactGate, SubscriptionGate
from shared.db import Connection
from shared.events import SubscriptionState
from shared.vocabulary import Channel


async def upsert_subscription_state(connection: Connection, state: SubscriptionState) -> bool:
    """Keep the newest version of each subscription's state; False for an older or repeated version."""
    contacts = {
        contact.channel.value: {
            "active": contact.active,
            "verified": contact.verified,
            "masked": contact.masked,
            "pin_hash": contact.pin_hash,
        }
        for contact in state.contacts
    }
    updated = await connection.fetchval(
        "INSERT INTO subscription_states (subscription_id, status, version, contacts, updated_at)"
        " VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (subscription_id) DO UPDATE SET status = EXCLUDED.status, version = EXCLUDED.version,"
        " contacts = EXCLUDED.contacts, updated_at = EXCLUDED.updated_at"
        " WHERE subscription_states.version < EXCLUDED.version RETURNING true",
        state.subscription_id,
        state.status,
        state.version,
        contacts,
        state.updated_at,
    )
    return bool(updated)


def _gate(row: asyncpg.Record) -> SubscriptionGate:
    contacts: dict[str, dict[str, Any]] = row["contacts"]
    return SubscriptionGate(
        status=row["status"],
        version=row["version"],
        contacts={
            Channel(channel): ContactGate(
                active=bool(contact["active"]), verified=bool(contact["verified"]), masked=str(contact["masked"])
            )
            for channel, contact in contacts.items()
        },
    )


async def get_subscription_gate(connection: Connection, subscription_id: str) -> SubscriptionGate | None:
    row = await connection.fetchrow(
        "SELECT status, version, contacts FROM subscription_states WHERE subscription_id = $1", subscription_id
    )
    return None if row is None else _gate(row)


async def get_subscription_gates(connection: Connection, subscription_ids: list[str]) -> dict[str, SubscriptionGate]:
    """The known states of several subscriptions in one query (subscriptions with none are absent)."""
    rows = await connection.fetch(
        "SELECT subscription_id, status, version, contacts FROM subscription_states"
        " WHERE subscription_id = ANY($1::text[])",
        subscription_ids,
    )
    return {row["subscription_id"]: _gate(row) for row in rows}


async def pin_hash(connection: Connection, subscription_id: str, channel: Channel) -> str | None:
    """The hash of the PIN the subscriber chose for this channel's contact, from their latest state; None without."""
    value = await connection.fetchval(
        "SELECT contacts -> $2 ->> 'pin_hash' FROM subscription_states WHERE subscription_id = $1",
        subscription_id,
        channel.value,
    )
    return None if value is None else str(value)


async def disable_contact(
    connection: Connection, *, subscription_id: str, channel: str, contact_index: str, reason: str, now: datetime
) -> bool:
    inserted = await connection.fetchval(
        "INSERT INTO disabled_contacts (subscription_id, channel, contact_index, reason, disabled_at)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING true",
        subscription_id,
        channel,
        contact_index,
        reason,
        now,
    )
    return bool(inserted)


async def disabled_among(connection: Connection, contacts: list[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
    """Which of these (subscription id, channel, contact index) a provider told us never to use again."""
    rows = await connection.fetch(
        "SELECT d.subscription_id, d.channel, d.contact_index FROM disabled_contacts d"
        " JOIN unnest($1::text[], $2::text[], $3::text[]) AS c (subscription_id, channel, contact_index)"
        " USING (subscription_id, channel, contact_index)",
        [contact[0] for contact in contacts],
        [contact[1] for contact in contacts],
        [contact[2] for contact in contacts],
    )
    return {(row["subscription_id"], row["channel"], row["contact_index"]) for row in rows}
