"""Raw feed batches and files exactly as received, their stored chunks and their per-row errors."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator

from shared.db import Connection

UuidText = Annotated[str, BeforeValidator(str)]
"""A uuid column read as text."""


class StoredBatch(BaseModel):
    batch_id: UuidText
    agency_id: str
    kind: str
    idempotency_key: str | None
    body_sha256: str | None
    size_bytes: int
    status: str
    received_at: datetime
    processed_at: datetime | None
    rows_processed: int
    rows_accepted: int
    rows_rejected: int
    error: str | None
    result: Any


BATCH_COLUMNS = ", ".join(StoredBatch.model_fields)


async def insert_batch(
    connection: Connection,
    *,
    batch_id: str,
    agency_id: str,
    kind: str,
    status: str,
    idempotency_key: str | None = None,
    body_sha256: str | None = None,
    body: bytes | None = None,
) -> StoredBatch | None:
    """Store a received batch; None when the agency already used this idempotency key."""
    row = await connection.fetchrow(
        "INSERT INTO feed_batches (batch_id, agency_id, kind, idempotency_key, body_sha256, body, size_bytes, status)"  # noqa: S608
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (agency_id, idempotency_key) DO NOTHING"
        f" RETURNING {BATCH_COLUMNS}",
        batch_id,
        agency_id,
        kind,
        idempotency_key,
        body_sha256,
        body,
        len(body) if body is not None else 0,
        status,
    )
    return StoredBatch.model_validate(dict(row)) if row else None


async def find_batch(
    connection: Connection, agency_id: str, *, batch_id: str | None = None, idempotency_key: str | None = None
) -> StoredBatch | None:
    row = await connection.fetchrow(
        f"SELECT {BATCH_COLUMNS} FROM feed_batches WHERE agency_id = $1"  # noqa: S608
        " AND ($2::uuid IS NULL OR batch_id = $2::uuid) AND ($3::text IS NULL OR idempotency_key = $3)",
        agency_id,
        batch_id,
        idempotency_key,
    )
    return StoredBatch.model_validate(dict(row)) if row else None


async def lock_batch(connection: Connection, batch_id: str) -> tuple[StoredBatch, bytes | None] | None:
    row = await connection.fetchrow(
        f"SELECT {BATCH_COLUMNS}, body FROM feed_batches WHERE batch_id = $1 FOR NO KEY UPDATE",  # noqa: S608
        batch_id,
    )
    if row is None:
        return None
    values = dict(row)
    body = values.pop("body")
    return StoredBatch.model_validate(values), (bytes(body) if body is not None else None)


async def finish_batch(
    connection: Connection,
    batch_id: str,
    *,
    status: str,
    accepted: int,
    rejected: int,
    processed: int,
    result: Any = None,
    error: str | None = None,
) -> None:
    await connection.execute(
        "UPDATE feed_batches SET status = $2, rows_accepted = $3, rows_rejected = $4, rows_processed = $5,"
        " result = $6, error = $7, processed_at = now() WHERE batch_id = $1",
        batch_id,
        status,
        accepted,
        rejected,
        processed,
        result,
        error,
    )


async def record_file_progress(
    connection: Connection, batch_id: str, *, processed: int, accepted: int, rejected: int
) -> None:
    await connection.execute(
        "UPDATE feed_batches SET status = 'processing', rows_processed = rows_processed + $2,"
        " rows_accepted = rows_accepted + $3, rows_rejected = rows_rejected + $4 WHERE batch_id = $1",
        batch_id,
        processed,
        accepted,
        rejected,
    )


async def set_batch_status(connection: Connection, batch_id: str, status: str, error: str | None = None) -> None:
    await connection.execute(
        "UPDATE feed_batches SET status = $2, error = coalesce($3, error),"
        " processed_at = CASE WHEN $2 IN ('processed', 'failed') THEN now() ELSE processed_at END"
        " WHERE batch_id = $1",
        batch_id,
        status,
        error,
    )


async def batches_to_recover(connection: Connection, kind: str, older_than: datetime, limit: int = 20) -> list[str]:
    """Batches stored but not (fully) processed, e.g. after a crash: oldest first."""
    rows = await connection.fetch(
        "SELECT batch_id FROM feed_batches WHERE kind = $1 AND status IN ('received', 'pending', 'processing')"
        " AND received_at < $2 ORDER BY received_at LIMIT $3",
        kind,
        older_than,
        limit,
    )
    return [str(row["batch_id"]) for row in rows]


async def insert_chunk(connection: Connection, batch_id: str, chunk_no: int, data: bytes) -> None:
    await connection.execute(
        "INSERT INTO feed_file_chunks (batch_id, chunk_no, data) VALUES ($1, $2, $3)", batch_id, chunk_no, data
    )


async def read_chunk(connection: Connection, batch_id: str, chunk_no: int) -> bytes | None:
    data = await connection.fetchval(
        "SELECT data FROM feed_file_chunks WHERE batch_id = $1 AND chunk_no = $2", batch_id, chunk_no
    )
    return bytes(data) if data is not None else None


async def complete_upload(connection: Connection, batch_id: str, size_bytes: int, sha256: str) -> None:
    await connection.execute(
        "UPDATE feed_batches SET status = 'pending', size_bytes = $2, body_sha256 = $3 WHERE batch_id = $1",
        batch_id,
        size_bytes,
        sha256,
    )


async def insert_row_errors(
    connection: Connection, batch_id: str, errors: Iterable[tuple[int, str | None, str]]
) -> None:
    await connection.executemany(
        "INSERT INTO feed_row_errors (batch_id, row_number, record_id, reason) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT DO NOTHING",
        [(batch_id, row, record_id, reason) for row, record_id, reason in errors],
    )


async def row_errors(
    connection: Connection, batch_id: str, limit: int, offset: int
) -> list[tuple[int, str | None, str]]:
    rows = await connection.fetch(
        "SELECT row_number, record_id, reason FROM feed_row_errors WHERE batch_id = $1 ORDER BY row_number"
        " LIMIT $2 OFFSET $3",
        batch_id,
        limit,
        offset,
    )
    return [(row["row_number"], row["record_id"], row["reason"]) for row in rows]


async def agency_of_batch(connection: Connection, batch_id: str) -> str:
    agency_id: str = await connection.fetchval("SELECT agency_id FROM feed_batches WHERE batch_id = $1", batch_id)
    return agency_id


async def set_batch_result(connection: Connection, batch_id: str, result: Any) -> None:
    await connection.execute("UPDATE feed_batches SET result = $2 WHERE batch_id = $1", batch_id, result)
