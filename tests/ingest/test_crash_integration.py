"""Ingest killed (SIGKILL) mid-batch: nothing is half-applied, and a retry yields exactly a clean run's events."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import asyncpg
import httpx
import pytest

from services.ingest.domain.events import event_id_for
from shared.settings import KafkaSettings
from shared.topics import CUSTODY_STATUS_CHANGED
from tests.apps import ServiceProcess
from tests.ingest.conftest import ADMIN, ADMIN_TOKEN, minutes_ago
from tests.kafkautil import read_exactly

pytestmark = pytest.mark.integration

RECORDS = 5000


def big_batch() -> bytes:
    effective_at = minutes_ago(30)
    records = [
        {
            "record_id": f"crash-{n}",
            "person_number": f"P-{n}",
            "case_numbers": [f"CR-{n}"],
            "status_code": "BOOKED" if n % 2 else "RELEASED_BOND",
            "effective_at": effective_at,
        }
        for n in range(RECORDS)
    ]
    return json.dumps({"records": records}).encode()


async def wait_for_raw_batch(pool: asyncpg.Pool, key: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await pool.fetchval("SELECT 1 FROM feed_batches WHERE idempotency_key = $1", key):
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the raw batch was never stored")


async def test_a_crash_mid_batch_then_a_retry_yields_exactly_the_events_of_a_clean_run(
    database_url: str, kafka_settings: KafkaSettings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    env = {
        "INGEST_ENVIRONMENT": "test",
        "INGEST_DATABASE_URL": database_url,
        "INGEST_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "INGEST_KAFKA__TOPIC_PREFIX": kafka_settings.topic_prefix,
        "INGEST_ADMIN_TOKEN": ADMIN_TOKEN,
        "INGEST_RECOVERY_GRACE_SECONDS": "3600",
        "INGEST_LOG_LEVEL": "WARNING",
    }
    service = ServiceProcess("services.ingest", env, port_variable="INGEST_HTTP_PORT", log_dir=tmp_path)
    service.start()
    try:
        await service.wait_ready()
        async with httpx.AsyncClient(base_url=service.url, timeout=60) as client:
            # A mass batch by design: the storm guard (tested on its own) would rightly hold it.
            agency = {"agency_id": "crashy", "name": "Crashy Jail", "timezone": "UTC", "storm_min_changes": 1_000_000}
            assert (await client.post("/v1/admin/agencies", json=agency, headers=ADMIN)).status_code == 201
            key = await client.post("/v1/admin/agencies/crashy/keys", json={}, headers=ADMIN)
            auth = {"Authorization": f"Bearer {key.json()['api_key']}", "Idempotency-Key": "nightly-0042"}
            body = big_batch()

            request = asyncio.create_task(client.post("/v1/agencies/crashy/custody-events", content=body, headers=auth))
            await wait_for_raw_batch(pool, "nightly-0042")
            service.kill()
            with pytest.raises(httpx.HTTPError):
                await request

            # Killed after the raw batch was stored and before its transaction committed: nothing half-applied.
            assert await pool.fetchval("SELECT status FROM feed_batches WHERE idempotency_key = 'nightly-0042'") == (
                "received"
            ), service.log_tail()
            assert await pool.fetchval("SELECT count(*) FROM custody_records") == 0
            assert await pool.fetchval("SELECT count(*) FROM subjects") == 0
            assert await pool.fetchval("SELECT count(*) FROM outbox WHERE topic LIKE '%custody%'") == 0

            service.start()
            await service.wait_ready()
            retried = await client.post("/v1/agencies/crashy/custody-events", content=body, headers=auth)
            assert retried.status_code == 200, retried.text
            assert retried.json()["summary"]["accepted"] == RECORDS
            again = await client.post("/v1/agencies/crashy/custody-events", content=body, headers=auth)
            assert again.json() == retried.json()

        topic = kafka_settings.topic(CUSTODY_STATUS_CHANGED.name)
        published = await read_exactly(kafka_settings, topic, RECORDS, settle=2.0, timeout=60)
        ids = [json.loads(message.value)["id"] for message in published]
        assert len(ids) == RECORDS, "no event published twice"
        assert set(ids) == {event_id_for("crashy", f"crash-{n}") for n in range(RECORDS)}, "the clean run's event ids"
        assert await pool.fetchval("SELECT count(*) FROM feed_batches") == 1
    finally:
        service.stop()
