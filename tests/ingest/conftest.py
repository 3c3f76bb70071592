"""Fixtures of the ingest tests: the service running in-process against the real Kafka and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from shared.settings import KafkaSettings
from tests.apps import running_app

ADMIN_TOKEN = "test-admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def ingest_settings(database_url: str, kafka_settings: KafkaSettings) -> IngestSettings:
    return IngestSettings(
        environment="test",
        database_url=database_url,
        kafka=kafka_settings,
        admin_token=ADMIN_TOKEN,
        recovery_interval_seconds=0.2,
        feed_health_interval_seconds=3600,
        file_chunk_bytes=1024,
        file_rows_per_transaction=3,
    )


@pytest.fixture
async def ingest(ingest_settings: IngestSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(create_app(ingest_settings)) as client:
        yield client


async def create_agency(client: httpx.AsyncClient, agency_id: str, **fields: Any) -> dict[str, str]:
    """Create an agency and a key for it; returns the Authorization header of that key."""
    body = {"agency_id": agency_id, "name": f"{agency_id} jail", "timezone": "America/Chicago"} | fields
    created = await client.post("/v1/admin/agencies", json=body, headers=ADMIN)
    assert created.status_code == 201, created.text
    key = await client.post(f"/v1/admin/agencies/{agency_id}/keys", json={"label": "test"}, headers=ADMIN)
    assert key.status_code == 201, key.text
    return {"Authorization": f"Bearer {key.json()['api_key']}"}


def minutes_ago(minutes: float) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat()


def record(record_id: str, status_code: str = "BOOKED", *, minutes: float = 60, **fields: Any) -> dict[str, Any]:
    return {
        "record_id": record_id,
        "person_number": "P-100",
        "booking_number": "B-200",
        "case_numbers": ["CR-300"],
        "name": "Jo Doe",
        "facility": "Main Jail",
        "status_code": status_code,
        "effective_at": minutes_ago(minutes),
    } | fields


async def push(
    client: httpx.AsyncClient,
    agency_id: str,
    auth: dict[str, str],
    records: list[dict[str, Any]],
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await client.post(
        f"/v1/agencies/{agency_id}/custody-events",
        content=json.dumps({"records": records}),
        headers=auth | {"Content-Type": "application/json"} | (headers or {}),
    )


def results(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [entry["result"] for entry in response.json()["results"]]
