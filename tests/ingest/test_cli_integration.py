"""The operator CLI against a real PostgreSQL: agencies, keys, status and CSV maps."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys

import asyncpg
import pytest

from tests.apps import REPO_ROOT

pytestmark = pytest.mark.integration


async def cli(database_url: str, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.ingest.cli",
        *args,
        cwd=REPO_ROOT,
        env={**os.environ, "INGEST_ENVIRONMENT": "test", "INGEST_DATABASE_URL": database_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


async def test_the_cli_manages_agencies_and_keys(database_url: str, pool: asyncpg.Pool) -> None:
    code, out, err = await cli(database_url, "create-agency", "cli-jail", "CLI Jail", "America/New_York")
    assert code == 0, err
    code, _, err = await cli(database_url, "create-agency", "cli-jail", "CLI Jail", "America/New_York")
    assert code == 1
    assert "already exists" in err
    code, _, err = await cli(database_url, "create-agency", "bad-zone", "Bad", "Nowhere/Land")
    assert code == 1
    assert "time zone" in err

    code, out, err = await cli(database_url, "create-key", "cli-jail", "--label", "JMS")
    assert code == 0, err
    token = out.split("API key:")[1].strip()
    key_id = out.split("key id:")[1].split()[0]
    stored = await pool.fetchrow("SELECT key_hash, label, revoked_at FROM api_keys WHERE key_id = $1", key_id)
    assert stored is not None
    assert stored["key_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert stored["label"] == "JMS"
    assert (await cli(database_url, "create-key", "no-such-jail"))[0] == 1

    status_map = json.dumps({"IN": {"status": "in_custody"}, "OUT": {"status": "released", "release_reason": "bond"}})
    assert (await cli(database_url, "set-status-map", "cli-jail", status_map))[0] == 0
    code, _, err = await cli(database_url, "set-status-map", "cli-jail", '{"X": {"status": "gone"}}')
    assert code == 1
    assert "status" in err
    assert (await cli(database_url, "set-csv-map", "cli-jail", '{"record_id": "TXN"}'))[0] == 0
    assert (await cli(database_url, "set-csv-map", "cli-jail", "{not json"))[0] == 1

    agency = await pool.fetchrow("SELECT status_map, csv_columns FROM agencies WHERE agency_id = 'cli-jail'")
    assert agency is not None
    assert set(agency["status_map"]) == {"IN", "OUT"}
    assert agency["csv_columns"]["record_id"] == "TXN"
    assert agency["csv_columns"]["status_code"] == "status_code"
    profiles = await pool.fetchval("SELECT count(*) FROM outbox WHERE topic = 'agency.profile.v1'")
    assert profiles == 3, "each create and update publishes the agency profile"

    assert (await cli(database_url, "revoke-key", "cli-jail", key_id))[0] == 0
    assert await pool.fetchval("SELECT revoked_at IS NOT NULL FROM api_keys WHERE key_id = $1", key_id)
    assert (await cli(database_url, "revoke-key", "cli-jail", "000000000000"))[0] == 1
