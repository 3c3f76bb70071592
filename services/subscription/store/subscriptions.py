"""Subscriptions and their contact points (ciphertext, a masked form and a keyed hash only)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from services.subscription.domain.subscription import Contact, Subscription
from shared.columns import fields_of, placeholders
from shared.db import Connection
from shared.vocabulary import Channel

# The identifier is stored as two columns; the contact points have a table of their own.
_FIELDS = fields_of(Subscription, without=("identifier", "contacts"))
_COLUMNS = ("identifier_kind", "identifier_value", *_FIELDS)
# What a change may write (never the id, the agency, the case or the creation time); version last (the check).
_CHANGEABLE = tuple(name for name in _FIELDS if name not in {"subscription_id", "agency_id", "created_at", "version"})
_CONTACT_FIELDS = fields_of(Contact)


def _stored(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _values(subscription: Subscription, names: Sequence[str]) -> list[Any]:
    return [_stored(getattr(subscription, name)) for name in names]


async def insert_subscription(connection: Connection, subscription: Subscription) -> None:
    await connection.execute(
        f"INSERT INTO subscriptions ({', '.join(_COLUMNS)}) VALUES ({placeholders(len(_COLUMNS))})",  # noqa: S608
        subscription.identifier.kind.value,
        subscription.identifier.value,
        *_values(subscription, _FIELDS),
    )
    await _save_contacts(connection, subscription)


async def update_subscription(connection: Connection, subscription: Subscription) -> None:
    """Write a changed subscription; the version check refuses a write based on a stale read."""
    assignments = ", ".join(f"{name} = ${number}" for number, name in enumerate(_CHANGEABLE, start=2))
    version = len(_CHANGEABLE) + 2
    result = await connection.execute(
        f"UPDATE subscriptions SET {assignments}, version = ${version}"  # noqa: S608 - names from the model
        f" WHERE subscription_id = $1 AND version = ${version} - 1",
        subscription.subscription_id,
        *_values(subscription, _CHANGEABLE),
        subscription.version,
    )
    if result != "UPDATE 1":
        raise RuntimeError(f"subscription {subscription.subscription_id} changed concurrently")
    await _save_contacts(connection, subscription)


async def _save_contacts(connection: Connection, subscription: Subscription) -> None:
    """Upsert the subscription's contact points and delete the ones it no longer has."""
    await connection.execute(
        "DELETE FROM contact_points WHERE subscription_id = $1 AND NOT (channel = ANY($2::text[]))",
        subscription.subscription_id,
        [contact.channel.value for contact in subscription.contacts],
    )
    updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in _CONTACT_FIELDS if name != "channel")
    await connection.executemany(
        f"INSERT INTO contact_points (subscription_id, {', '.join(_CONTACT_FIELDS)})"  # noqa: S608 - from the model
        f" VALUES ({placeholders(1 + len(_CONTACT_FIELDS))})"
        f" ON CONFLICT (subscription_id, channel) DO UPDATE SET {updates}",
        [
            (subscription.subscription_id, *(getattr(contact, name) for name in _CONTACT_FIELDS))
            for contact in subscription.contacts
        ],
    )


_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM subscriptions WHERE subscription_id = $1"  # noqa: S608
_SELECT_FOR_UPDATE = _SELECT + " FOR UPDATE"


async def load_subscription(
    connection: Connection, subscription_id: str, *, for_update: bool = False
) -> Subscription | None:
    row = await connection.fetchrow(_SELECT_FOR_UPDATE if for_update else _SELECT, subscription_id)
    if row is None:
        return None
    contact_rows = await connection.fetch(
        f"SELECT {', '.join(_CONTACT_FIELDS)} FROM contact_points"  # noqa: S608 - names from the model
        " WHERE subscription_id = $1 ORDER BY channel DESC",
        subscription_id,
    )
    return _subscription(row, contact_rows)


def _subscription(row: asyncpg.Record, contact_rows: Sequence[asyncpg.Record]) -> Subscription:
    fields = dict(row)
    identifier = {"kind": fields.pop("identifier_kind"), "value": fields.pop("identifier_value")}
    contacts = [Contact.model_validate(dict(contact)) for contact in contact_rows]
    return Subscription.model_validate({**fields, "identifier": identifier, "contacts": contacts})


async def subscription_ids_by_contact(connection: Connection, channel: Channel, blind_index: str) -> list[str]:
    """Every subscription with this contact point, found by its keyed hash, in a stable order (lock order)."""
    rows = await connection.fetch(
        "SELECT subscription_id FROM contact_points WHERE blind_index = $1 AND channel = $2 ORDER BY subscription_id",
        blind_index,
        channel.value,
    )
    return [row["subscription_id"] for row in rows]


async def subscription_ids_after(connection: Connection, after: str, limit: int) -> list[str]:
    rows = await connection.fetch(
        "SELECT subscription_id FROM subscriptions WHERE subscription_id > $1 ORDER BY subscription_id LIMIT $2",
        after,
        limit,
    )
    return [row["subscription_id"] for row in rows]
