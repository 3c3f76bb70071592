"""The api_keys table: only each key's SHA-256 is kept."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from shared.db import Connection


class StoredKey(BaseModel):
    key_id: str
    agency_id: str
    key_hash: str
    label: str | None
    created_at: datetime
    revoked_at: datetime | None


KEY_COLUMNS = ", ".join(StoredKey.model_fields)


async def insert_key(connection: Connection, key_id: str, agency_id: str, key_hash: str, label: str | None) -> datetime:
    created: datetime = await connection.fetchval(
        "INSERT INTO api_keys (key_id, agency_id, key_hash, label) VALUES ($1, $2, $3, $4) RETURNING created_at",
        key_id,
        agency_id,
        key_hash,
        label,
    )
    return created


async def find_key(connection: Connection, key_id: str) -> StoredKey | None:
    row = await connection.fetchrow(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE key_id = $1", key_id)  # noqa: S608
    return StoredKey.model_validate(dict(row)) if row else None


async def list_keys(connection: Connection, agency_id: str) -> list[StoredKey]:
    rows = await connection.fetch(
        f"SELECT {KEY_COLUMNS} FROM api_keys WHERE agency_id = $1 ORDER BY created_at",  # noqa: S608
        agency_id,
    )
    return [StoredKey.model_validate(dict(row)) for row in rows]


async def revoke_key(connection: Connection, agency_id: str, key_id: str) -> bool:
    """Revoke a key of the agency; False when it has no such key. Revoking twice is harmless."""
    revoked = await connection.fetchval(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE agency_id = $1 AND key_id = $2"
        " RETURNING true",
        agency_id,
        key_id,
    )
    return bool(revoked)
