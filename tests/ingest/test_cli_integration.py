"""The ``custody-watch`` agency commands against a running ingest service (its admin API) and a real PostgreSQL:
agencies, keys, status and CSV maps."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from typer.testing import CliRunner

from cli.__main__ import app
from services.ingest.settings import IngestSettings
from shared.topics import AGENCY_PROFILE
from tests.apps import ServiceProcess
from tests.ingest.conftest import ADMIN_TOKEN

pytestmark = pytest.mark.integration


@pytest.fixture
async def ingest_url(ingest_settings: IngestSettings, tmp_path: Path) -> AsyncIterator[str]:
    """``python -m services.ingest`` on a free port, with the test's database and topics."""
    kafka = ingest_settings.kafka
    env = {
        "INGEST_ENVIRONMENT": "test",
        "INGEST_DATABASE_URL": ingest_settings.database_url,
        "INGEST_ADMIN_TOKEN": ADMIN_TOKEN,
        "INGEST_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "INGEST_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
        "INGEST_KAFKA__CLIENT_ID": kafka.client_id,
    }
    service = ServiceProcess("services.ingest", env, port_variable="INGEST_HTTP_PORT", log_dir=tmp_path)
    service.start()
    try:
        await service.wait_ready()
        yield service.url
    finally:
        service.stop()


async def cli(ingest_url: str, *args: str) -> tuple[int, str, str]:
    """``custody-watch agency ...`` as an operator runs it (in a thread, so the test's event loop stays free)."""
    runner = CliRunner(env={"CUSTODY_WATCH_INGEST_URL": ingest_url, "CUSTODY_WATCH_ADMIN_TOKEN": ADMIN_TOKEN})
    result = await asyncio.to_thread(runner.invoke, app, ["agency", *args])
    return result.exit_code, result.stdout, result.stderr


async def test_the_cli_manages_agencies_and_keys(
    ingest_url: str, ingest_settings: IngestSettings, pool: asyncpg.Pool
) -> None:
    create = ("create", "cli-jail", "--name", "CLI Jail", "--timezone", "America/New_York")
    code, out, err = await cli(ingest_url, *create)
    assert code == 0, err
    code, _, err = await cli(ingest_url, *create)
    assert code == 1
    assert "already exists" in err
    code, _, err = await cli(ingest_url, "create", "bad-zone", "--name", "Bad", "--timezone", "Nowhere/Land")
    assert code == 1
    assert "time zone" in err

    code, out, err = await cli(ingest_url, "key", "create", "cli-jail", "--label", "JMS")
    assert code == 0, err
    token = out.strip()
    key_id = err.split("API key ")[1].split()[0]
    stored = await pool.fetchrow("SELECT key_hash, label, revoked_at FROM api_keys WHERE key_id = $1", key_id)
    assert stored is not None
    assert stored["key_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert stored["label"] == "JMS"
    assert (await cli(ingest_url, "key", "create", "no-such-jail"))[0] == 1

    status_map = json.dumps({"IN": {"status": "in_custody"}, "OUT": {"status": "released", "release_reason": "bond"}})
    assert (await cli(ingest_url, "set-status-map", "cli-jail", status_map))[0] == 0
    code, _, err = await cli(ingest_url, "set-status-map", "cli-jail", '{"X": {"status": "gone"}}')
    assert code == 1
    assert "status" in err
    assert (await cli(ingest_url, "set-csv-map", "cli-jail", '{"record_id": "TXN"}'))[0] == 0
    assert (await cli(ingest_url, "set-csv-map", "cli-jail", "{not json"))[0] == 1

    agency = await pool.fetchrow("SELECT status_map, csv_columns FROM agencies WHERE agency_id = 'cli-jail'")
    assert agency is not None
    assert set(agency["status_map"]) == {"IN", "OUT"}
    assert agency["csv_columns"]["record_id"] == "TXN"
    assert agency["csv_columns"]["status_code"] == "status_code"
    profile_topic = ingest_settings.kafka.topic(AGENCY_PROFILE.name)
    profiles = await pool.fetchval("SELECT count(*) FROM outbox WHERE topic = $1", profile_topic)
    assert profiles == 3, "each create and update publishes the agency profile"

    assert (await cli(ingest_url, "key", "revoke", "cli-jail", key_id))[0] == 0
    assert await pool.fetchval("SELECT revoked_at IS NOT NULL FROM api_keys WHERE key_id = $1", key_id)
    assert (await cli(ingest_url, "key", "revoke", "cli-jail", "000000000000"))[0] == 1
