"""Hostile bodies at the feed API are refused before anything is stored: no batch is left behind."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from services.ingest.flows import batches
from tests.ingest.conftest import create_agency

pytestmark = pytest.mark.integration

DEEP = b'{"records": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", None])
async def test_json_nested_100000_deep_is_a_400_and_no_batch(
    ingest: httpx.AsyncClient, pool: Any, content_type: str | None
) -> None:
    auth = await create_agency(ingest, "county")
    headers = auth | ({"Content-Type": content_type} if content_type else {})
    answer = await ingest.post("/v1/agencies/county/custody-events", content=DEEP, headers=headers)
    assert answer.status_code == 400
    assert answer.json() == {"detail": "JSON nested deeper than 32 levels"}
    assert await pool.fetchval("SELECT count(*) FROM feed_batches") == 0


async def test_a_feed_past_its_limit_is_refused_before_authentication(ingest: httpx.AsyncClient, pool: Any) -> None:
    await create_agency(ingest, "county")
    limit = 20 * 1024 * 1024
    declared = await ingest.post(
        "/v1/agencies/county/custody-events", content=b"x", headers={"Content-Length": str(limit + 1)}
    )
    assert declared.status_code == 413
    assert f"limit of {limit} bytes" in declared.json()["detail"]
    assert await pool.fetchval("SELECT count(*) FROM feed_batches") == 0


def test_a_stored_batch_too_deep_to_parse_fails_instead_of_staying_received() -> None:
    with pytest.raises(batches.BatchInvalidError, match="nested too deeply") as refused:
        batches.read_json_batch(DEEP, max_records=10)
    assert refused.value.status_code == 400
