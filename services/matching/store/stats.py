"""Sizes of matching's state, for operators."""

from __future__ import annotations

from shared.db import Connection


async def counts(connection: Connection, agency_id: str | None = None) -> dict[str, int]:
    """Sizes of matching's state, for operators (no personal data); of one agency's, when given."""
    row = await connection.fetchrow(
        "SELECT (SELECT count(*) FROM subscriptions WHERE status = 'active'"
        "         AND ($1::text IS NULL OR agency_id = $1)) AS active_subscriptions,"
        " (SELECT count(*) FROM subscriptions, jsonb_array_elements(state -> 'contacts') AS contact"
        "   WHERE status = 'active' AND ($1::text IS NULL OR agency_id = $1)"
        "     AND (contact ->> 'verified')::boolean AND (contact ->> 'active')::boolean) AS reachable_contacts,"
        " (SELECT count(*) FROM custody_subjects WHERE change IS NOT NULL"
        "   AND ($1::text IS NULL OR agency_id = $1)) AS subjects_with_status,"
        " (SELECT count(*) FROM custody_subjects WHERE sealed_at IS NOT NULL"
        "   AND ($1::text IS NULL OR agency_id = $1)) AS sealed_subjects,"
        " (SELECT count(*) FROM notification_requests) AS notification_requests",
        agency_id,
    )
    return {} if row is None else {key: int(value) for key, value in row.items()}
