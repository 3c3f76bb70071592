"""A pool connection goes back without asyncpg's four-statement reset, unless it took session state."""

from __future__ import annotations

import asyncpg
import pytest

from shared.db import create_pool, holds_session_state

pytestmark = pytest.mark.integration

LOCK_ID = 4_242_001


async def test_a_connection_given_back_keeps_its_session_unless_it_held_session_state(database_url: str) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as connection:
            await connection.execute("SET application_name = 'not reset'")
        async with pool.acquire() as connection:
            assert await connection.fetchval("SHOW application_name") == "not reset", "given back without a reset"
            holds_session_state(connection)
            assert await connection.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_ID)
        # The holder "forgot" to unlock: the full reset on its return released the lock (and the setting).
        outsider = await asyncpg.connect(database_url)
        try:
            assert await outsider.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_ID)
        finally:
            await outsider.close()
        async with pool.acquire() as connection:
            assert await connection.fetchval("SHOW application_name") != "not reset"
    finally:
        await pool.close()
