"""Sealing subjects: nothing about a sealed subject is disclosed from then on."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from shared.db import Connection


async def find_subjects_by_identifiers(
    connection: Connection, agency_id: str, keys: Iterable[tuple[str, str]]
) -> list[str]:
    kinds, values = zip(*set(keys), strict=True)
    rows = await connection.fetch(
        "SELECT DISTINCT subject_id FROM subject_identifiers"
        " JOIN unnest($2::text[], $3::text[]) AS k(kind, normalised) USING (kind, normalised)"
        " WHERE agency_id = $1",
        agency_id,
        list(kinds),
        list(values),
    )
    return [str(row["subject_id"]) for row in rows]


async def create_sealed_subject(connection: Connection, agency_id: str, subject_id: str, at: datetime) -> None:
    await connection.execute(
        "INSERT INTO subjects (subject_id, agency_id, sealed_at) VALUES ($1, $2, $3)", subject_id, agency_id, at
    )


async def seal_subject(connection: Connection, subject_id: str, at: datetime) -> datetime:
    """Seal the subject (keeping the first sealing time); returns when it was sealed."""
    sealed: datetime = await connection.fetchval(
        "UPDATE subjects SET sealed_at = coalesce(sealed_at, $2), updated_at = now() WHERE subject_id = $1"
        " RETURNING sealed_at",
        subject_id,
        at,
    )
    return sealed
