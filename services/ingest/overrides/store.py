"""Operator overrides: who set which status by hand, when and why."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from services.ingest.store.batches import UuidText
from shared.db import Connection


class StoredOverride(BaseModel):
    override_id: UuidText
    agency_id: str
    subject_id: UuidText
    result: str
    event_id: str | None
    status: str
    effective_at: datetime
    operator: str
    reason: str
    created_at: datetime


OVERRIDE_COLUMNS = ", ".join(StoredOverride.model_fields)


async def insert_override(connection: Connection, override: StoredOverride) -> None:
    values = override.model_dump()
    placeholders = ", ".join(f"${n}" for n in range(1, len(values) + 1))
    await connection.execute(
        f"INSERT INTO overrides ({OVERRIDE_COLUMNS}) VALUES ({placeholders})",  # noqa: S608 - the model's fields
        *values.values(),
    )


async def list_overrides(connection: Connection, agency_id: str, limit: int = 100) -> list[StoredOverride]:
    rows = await connection.fetch(
        f"SELECT {OVERRIDE_COLUMNS} FROM overrides WHERE agency_id = $1"  # noqa: S608 - fixed column names
        " ORDER BY created_at DESC LIMIT $2",
        agency_id,
        limit,
    )
    return [StoredOverride.model_validate(dict(row)) for row in rows]
