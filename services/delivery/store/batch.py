"""A bookkeeping batch's row updates, held until the batch ends and then written as one set-based statement per
shape (the same columns of the same tables) instead of one statement per row.

Held updates are written first whenever anything else reads or writes these tables (``flush``), and before another
update of a row already held, so every query sees what the batch wrote before it, in order.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.db import Connection

KEYS = {"attempts": "attempt_id", "notifications": "notification_id"}
"""The tables whose updates may be held, by their key column."""
_TOUCHED = {"attempts": "", "notifications": ", updated_at = now()"}


@dataclass(frozen=True)
class RowUpdate:
    table: str
    key: str
    changes: dict[str, Any]
    """Column names (ours, never input) and their new values."""


Shape = tuple[tuple[str, tuple[str, ...]], ...]


@dataclass
class _Held:
    by_shape: dict[Shape, list[Sequence[RowUpdate]]] = field(default_factory=dict)
    rows: set[tuple[str, str]] = field(default_factory=set)


_held: ContextVar[_Held | None] = ContextVar("held_updates", default=None)


@contextlib.asynccontextmanager
async def holding(connection: Connection) -> AsyncIterator[None]:
    """Within, :func:`update` holds its updates; leaving without an error writes them."""
    token = _held.set(_Held())
    try:
        yield
        await flush(connection)
    finally:
        _held.reset(token)


def is_holding() -> bool:
    return _held.get() is not None


async def update(connection: Connection, *updates: RowUpdate) -> None:
    """Hold these updates (written together: one statement with the others of their shape); caller: in
    :func:`holding` only."""
    held = _held.get()
    if held is None:
        raise RuntimeError("batch.update outside batch.holding")
    if any((row.table, row.key) in held.rows for row in updates):
        await flush(connection)  # one statement must not update a row twice
    shape = tuple((row.table, tuple(row.changes)) for row in updates)
    held.by_shape.setdefault(shape, []).append(updates)
    held.rows.update((row.table, row.key) for row in updates)


async def flush(connection: Connection) -> None:
    """Write what is held (nothing outside :func:`holding`)."""
    held = _held.get()
    if held is None or not held.by_shape:
        return
    by_shape = held.by_shape
    held.by_shape, held.rows = {}, set()
    for shape, groups in by_shape.items():
        await connection.execute(
            _statement(shape), *(_encoded([group[position] for group in groups]) for position in range(len(shape)))
        )


def _statement(shape: Shape) -> str:
    """One UPDATE per table of the shape (chained as CTEs), each joining its rows from a JSON array parameter."""
    updates = []
    for position, (table, columns) in enumerate(shape, start=1):
        key = KEYS[table]
        assignments = ", ".join(f"{column} = r.{column}" for column in columns)
        updates.append(
            f"UPDATE {table} t SET {assignments}{_TOUCHED[table]}"  # noqa: S608 - names are ours, values parameters
            f" FROM jsonb_populate_recordset(NULL::{table}, ${position}::text::jsonb) r WHERE t.{key} = r.{key}"
        )
    *first, last = updates
    ctes = ", ".join(f"u{position} AS ({sql})" for position, sql in enumerate(first, start=1))
    return f"WITH {ctes} {last}" if ctes else last


def _encoded(rows: list[RowUpdate]) -> str:
    return json.dumps([{KEYS[row.table]: row.key} | row.changes for row in rows], default=_json_value)


def _json_value(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot hold a {type(value).__name__} for a batch update")
