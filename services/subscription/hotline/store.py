"""The hotline's SQL: a keypad has no letters, so a case number is found by its digits."""

from __future__ import annotations

from shared.db import Connection
from shared.events import SubjectIdentifier
from shared.vocabulary import IdentifierKind

MAX_CANDIDATES = 3


async def identifiers_by_digits(connection: Connection, agency_id: str, digits: str) -> list[SubjectIdentifier]:
    """The agency's case and booking numbers (then person numbers) whose digits are ``digits`` ("CR-2026-0001" for
    20260001), booking numbers first. Sealed ones too: the lookup decides what may be said about each."""
    rows = await connection.fetch(
        """
        SELECT identifier_kind, identifier_value FROM custody_identifiers
        WHERE agency_id = $1 AND regexp_replace(identifier_value, '[^0-9]', '', 'g') = $2
        ORDER BY array_position(ARRAY['booking_number', 'case_number', 'person_number'], identifier_kind),
            identifier_value
        LIMIT $3
        """,
        agency_id,
        digits,
        MAX_CANDIDATES,
    )
    return [
        SubjectIdentifier(kind=IdentifierKind(row["identifier_kind"]), value=row["identifier_value"]) for row in rows
    ]


async def subscriptions_calling(
    connection: Connection, agency_id: str, identifier: SubjectIdentifier, blind_index: str
) -> list[str]:
    """The subscriptions to this case, not cancelled, that call the number behind ``blind_index``."""
    rows = await connection.fetch(
        """
        SELECT s.subscription_id FROM subscriptions s JOIN contact_points c USING (subscription_id)
        WHERE s.agency_id = $1 AND s.identifier_kind = $2 AND s.identifier_value = $3 AND s.status <> 'cancelled'
            AND c.channel = 'voice' AND c.blind_index = $4 AND c.active
        ORDER BY s.subscription_id
        """,
        agency_id,
        identifier.kind.value,
        identifier.value,
        blind_index,
    )
    return [row["subscription_id"] for row in rows]
