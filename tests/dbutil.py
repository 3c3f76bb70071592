"""PostgreSQL as tests make it misbehave."""

from __future__ import annotations

import asyncpg


async def refuse_connections(admin_dsn: str, database: str, *, refuse: bool) -> None:
    """Make ``database`` refuse connections and drop the ones it has (as a failover or a restart does), or let
    clients in again."""
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {"false" if refuse else "true"}')
        if refuse:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )
    finally:
        await admin.close()
