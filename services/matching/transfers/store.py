"""People transferred to another participating agency, and the subscriptions that followed them there."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from services.matching.domain import CaseKey
from services.matching.store.subjects import subject_keys
from shared.db import Connection
from shared.events import SubscriptionState


class TransferredSubject(BaseModel):
    """A subject of another agency, transferred: with every identifier its agency sent."""

    model_config = ConfigDict(frozen=True)

    agency_id: str
    subject_id: str
    keys: list[CaseKey]


async def transferred_to(
    connection: Connection, agency_id: str, person_numbers: Sequence[str], since: datetime
) -> list[TransferredSubject]:
    """Subjects of other agencies whose newest change is a transfer to ``agency_id`` since ``since``, known by one
    of these (normalised) person numbers; each with every identifier its agency sent."""
    if not person_numbers:
        return []
    rows = await connection.fetch(
        "SELECT DISTINCT c.agency_id, c.subject_id FROM subject_identifiers i"
        " JOIN custody_subjects c ON c.agency_id = i.agency_id AND c.subject_id = i.subject_id"
        " WHERE i.identifier_kind = 'person_number' AND i.identifier_value = ANY($2::text[])"
        "   AND c.agency_id <> $1 AND c.change ->> 'status' = 'transferred'"
        "   AND c.change ->> 'transferred_to_agency_id' = $1 AND c.effective_at >= $3"
        " ORDER BY c.agency_id, c.subject_id",
        agency_id,
        list(person_numbers),
        since,
    )
    return [
        TransferredSubject.model_validate(
            dict(row) | {"keys": await subject_keys(connection, row["agency_id"], row["subject_id"])}
        )
        for row in rows
    ]


async def follow(
    connection: Connection,
    subscription_ids: Sequence[str],
    agency_id: str,
    subject_id: str,
    came_from: TransferredSubject,
) -> set[str]:
    """These subscriptions follow the subject from now on; returns those that did not already."""
    rows = await connection.fetch(
        "INSERT INTO followed_subjects (subscription_id, agency_id, subject_id, from_agency_id, from_subject_id)"
        " SELECT s, $2, $3, $4, $5 FROM unnest($1::text[]) AS s ON CONFLICT DO NOTHING RETURNING subscription_id",
        list(subscription_ids),
        agency_id,
        subject_id,
        came_from.agency_id,
        came_from.subject_id,
    )
    return {row["subscription_id"] for row in rows}


async def followers_of(connection: Connection, agency_id: str, subject_id: str) -> list[SubscriptionState]:
    """The active subscriptions that followed a transferred person to this agency's subject."""
    rows = await connection.fetch(
        "SELECT s.state FROM followed_subjects f JOIN subscriptions s USING (subscription_id)"
        " WHERE f.agency_id = $1 AND f.subject_id = $2 AND s.status = 'active' ORDER BY s.subscription_id",
        agency_id,
        subject_id,
    )
    return [SubscriptionState.model_validate(row["state"]) for row in rows]
