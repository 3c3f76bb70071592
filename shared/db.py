"""PostgreSQL: one asyncpg pool per service and SQL migrations applied at start-up."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from importlib import resources
from importlib.abc import Traversable
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

Connection = asyncpg.Connection | PoolConnectionProxy
"""A plain connection or one borrowed from a pool: both work for every query helper."""

log = logging.getLogger(__name__)

# Every service runs its migrations under this advisory lock, so two replicas starting at once do not race.
MIGRATION_LOCK_ID = 7_312_001


class PooledConnection(asyncpg.Connection):
    """A pool's connection whose return costs no round trip: asyncpg's reset (``pg_advisory_unlock_all(); CLOSE ALL;
    UNLISTEN *; RESET ALL``, four statements per release) runs only for a connection marked by
    :func:`holds_session_state`. Nothing else here sets session state: no ``SET``, no cursor outside a transaction,
    and asyncpg still rolls back a transaction left open and drops the listener callbacks on every release."""

    __slots__ = ("_session_state",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._session_state = False

    def hold_session_state(self) -> None:
        self._session_state = True

    def get_reset_query(self) -> str:
        if not self._session_state:
            return ""
        self._session_state = False
        return str(super().get_reset_query())


def holds_session_state(connection: Connection) -> None:
    """Call before a session advisory lock or a LISTEN: the connection is then fully reset when given back, so a
    holder that could not undo its state (cancelled twice, an error in ``finally``) leaves nothing to the next."""
    mark = getattr(connection, "hold_session_state", None)  # a pool's proxy passes it on to its connection
    if mark is not None:
        mark()


async def _init_connection(connection: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await connection.set_type_codec(type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, connection_class=PooledConnection
    )
    if pool is None:  # only when called without awaiting; keeps the type checker honest
        raise RuntimeError("asyncpg returned no pool")
    return pool


def migration_files(packages: Sequence[str]) -> list[tuple[str, str]]:
    """(name, sql) of every ``*.sql`` in each package's ``migrations`` folder, shared ones first, sorted by name."""
    found: list[tuple[str, str]] = []
    for package in packages:
        folder: Traversable = resources.files(package).joinpath("migrations")
        files = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
        found.extend((f"{package}:{f.name}", f.read_text()) for f in files)
    return found


async def apply_migrations(pool: asyncpg.Pool, packages: Sequence[str]) -> list[str]:
    """Apply migrations not yet recorded in ``schema_migrations``; returns the names applied now."""
    applied_now: list[str] = []
    async with pool.acquire() as connection:
        holds_session_state(connection)
        await connection.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
        try:
            await connection.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row["name"] for row in await connection.fetch("SELECT name FROM schema_migrations")}
            for name, sql in migration_files(packages):
                if name in done:
                    continue
                async with connection.transaction():
                    await connection.execute(sql)
                    await connection.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
                applied_now.append(name)
                log.info("applied migration %s", name)
        finally:
            await connection.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)
    return applied_now


async def server_version(pool: asyncpg.Pool) -> str:
    value: Any = await pool.fetchval("SHOW server_version")
    return str(value)
