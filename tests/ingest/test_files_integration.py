"""CSV uploads against real Kafka and PostgreSQL: streamed, mapped per agency, resumable, per-row errors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest

from services.ingest.agencies import flows as agencies_flows
from services.ingest.domain.events import event_id_for
from services.ingest.flows import files
from services.ingest.settings import IngestSettings
from shared.db import apply_migrations
from shared.envelope import decode
from shared.events import CustodyStatusChanged
from shared.settings import KafkaSettings
from shared.topics import CUSTODY_STATUS_CHANGED
from tests.ingest.conftest import ADMIN, create_agency
from tests.kafkautil import read_exactly

pytestmark = pytest.mark.integration

COLUMNS = {
    "record_id": "TXN",
    "person_number": "SO_NUMBER",
    "booking_number": "BOOKING",
    "case_numbers": "CASES",
    "name": "INMATE NAME",
    "status_code": "ACTION",
    "effective_at": "ACTION_TIME",
}
STATUS_MAP = {
    "BK": {"status": "in_custody"},
    "RB": {"status": "released", "release_reason": "bond"},
    "TR": {"status": "transferred"},
}


async def wait_for_job(
    client: httpx.AsyncClient, url: str, auth: dict[str, str], timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = (await client.get(url, headers=auth)).json()
        if job["status"] in ("processed", "failed"):
            return job
        await asyncio.sleep(0.1)
    raise AssertionError(f"job not done: {job}")


def csv_rows(rows: list[str]) -> bytes:
    return ("\r\n".join(["TXN,SO_NUMBER,BOOKING,CASES,INMATE NAME,ACTION,ACTION_TIME,EXTRA", *rows]) + "\r\n").encode()


async def test_a_csv_export_is_streamed_mapped_and_applied_with_per_row_errors(
    ingest: httpx.AsyncClient, kafka_settings: KafkaSettings
) -> None:
    auth = await create_agency(ingest, "csv-jail", status_map=STATUS_MAP, csv_columns=COLUMNS)
    local_now = datetime.now(ZoneInfo("America/Chicago"))  # times without offset are the agency's local time
    at = (local_now - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
    later = (local_now - timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S")
    padding = "x" * 190  # with several long rows, rows span the boundaries of stored chunks (1 KiB in tests)
    body = csv_rows(
        [
            f't1,P1,B1,CR-1;CR-2,"Doe, Jo {padding}",BK,{at},a',
            f't2,P2,B2,CR-3,"Roe,\nRi (two lines)",BK,{at},b',
            f"t3,P3,B3,,Name,ZZ,{at},c",
            "t4,P4,B4,,Name,BK,not-a-date,d",
            "t5,P5,B5,,Name,BK",
            f"t6,P1,,,Doe,RB,{later},e",
            "",
            f"t1,P1,B1,,Doe,RB,{later},f",
            f"t7,P7,,,{padding},BK,{at},g",
            f"t8,P8,,,{padding},TR,{at},h",
        ]
    )
    uploaded = await ingest.post("/v1/agencies/csv-jail/custody-files", content=body, headers=auth)
    assert uploaded.status_code == 202, uploaded.text
    job_url = f"/v1/agencies/csv-jail/custody-files/{uploaded.json()['job_id']}"
    job = await wait_for_job(ingest, job_url, auth)

    assert job["status"] == "processed", job
    assert job["size_bytes"] == len(body)
    assert job["rows_processed"] == 9
    assert job["rows_accepted"] == 5, str(job)
    assert job["rows_rejected"] == 3
    assert job["summary"]["duplicate"] == 1
    errors = {error["row"]: error["reason"] for error in job["errors"]}
    assert set(errors) == {3, 4, 5}
    assert "unknown status code 'ZZ'" in errors[3]
    assert "effective_at" in errors[4]
    assert "row has 6 fields" in errors[5]

    published = await read_exactly(kafka_settings, kafka_settings.topic(CUSTODY_STATUS_CHANGED.name), 5)
    data = [decode(message.value).data for message in published]
    changes = {change.agency_record_id: change for change in data if isinstance(change, CustodyStatusChanged)}
    assert set(changes) == {"t1", "t2", "t6", "t7", "t8"}
    assert changes["t2"].display_name == "Roe,\nRi (two lines)"
    assert changes["t6"].release_reason == "bond"
    assert changes["t6"].subject_id == changes["t1"].subject_id
    assert {i.value for i in changes["t6"].identifiers} == {"P1", "B1", "CR-1", "CR-2"}


async def test_file_errors_are_specific(ingest: httpx.AsyncClient, ingest_settings: IngestSettings) -> None:
    auth = await create_agency(ingest, "csv-jail", csv_columns=COLUMNS)
    url = "/v1/agencies/csv-jail/custody-files"
    assert (await ingest.post(url, content=b"", headers=auth)).status_code == 400
    no_columns = await ingest.post(url, content=b"a,b,c\n1,2,3\n", headers=auth)
    job = await wait_for_job(ingest, f"{url}/{no_columns.json()['job_id']}", auth)
    assert job["status"] == "failed"
    assert "lacks required column" in job["error"]
    not_utf8 = await ingest.post(
        url, content=csv_rows(["t1,P1,B1,,\xff,BK,2026-01-01,x"]).replace(b"\xc3\xbf", b"\xff"), headers=auth
    )
    job = await wait_for_job(ingest, f"{url}/{not_utf8.json()['job_id']}", auth)
    assert job["status"] == "failed"
    assert "not UTF-8" in job["error"]
    assert (await ingest.get(f"{url}/not-a-job", headers=auth)).status_code == 404
    too_big = await ingest.post(
        url, content=b"x" * 10, headers=auth | {"Content-Length": str(ingest_settings.max_file_bytes + 1)}
    )
    assert too_big.status_code == 413
    other = await create_agency(ingest, "other-jail")
    assert (await ingest.get(f"{url}/{no_columns.json()['job_id']}", headers=other)).status_code == 403
    assert (await ingest.get("/v1/admin/agencies/csv-jail", headers=ADMIN)).json()["csv_columns"]["record_id"] == "TXN"


class DiesAfterSlices(files.FileJob):
    """A worker that dies (as in a crash) after committing a number of slices."""

    def __init__(self, *args: Any, slices: int) -> None:
        super().__init__(*args)
        self.slices_left = slices

    async def _apply(self, *args: Any, **kwargs: Any) -> bool:
        if self.slices_left == 0:
            raise ConnectionResetError("worker died")
        self.slices_left -= 1
        return await super()._apply(*args, **kwargs)


async def test_an_interrupted_file_resumes_without_double_events(
    ingest_settings: IngestSettings, pool: asyncpg.Pool
) -> None:
    """Progress commits with each slice of rows (3 in tests): a job picked up again skips the rows already applied."""
    await apply_migrations(pool, ["shared", "services.ingest"])
    async with pool.acquire() as connection:
        values = {"agency_id": "csv-jail", "name": "CSV Jail", "timezone": "UTC"}
        agency = await agencies_flows.create_agency(
            connection, ingest_settings, values | {"status_map": STATUS_MAP, "csv_columns": COLUMNS}
        )
    assert agency is not None
    at = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    body = csv_rows([f"r{n},P{n},,,{'N' * 150},BK,{at},x" for n in range(10)])

    async def upload() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 100):
            yield body[start : start + 100]

    job_id = await files.receive_file(pool, ingest_settings, agency, upload())
    assert await pool.fetchval("SELECT count(*) FROM feed_file_chunks WHERE batch_id = $1", job_id) > 1
    with pytest.raises(ConnectionResetError):
        await DiesAfterSlices(pool, ingest_settings, job_id, slices=2).run()
    assert await pool.fetchval("SELECT rows_processed FROM feed_batches WHERE batch_id = $1", job_id) == 6
    assert await files.process_pending_files(pool, ingest_settings) == 1

    job = await pool.fetchrow(
        "SELECT status, rows_processed, rows_accepted FROM feed_batches WHERE batch_id = $1", job_id
    )
    assert job is not None
    assert tuple(job) == ("processed", 10, 10)
    assert await pool.fetchval("SELECT sum(count) FROM feed_counts") == 10, "no row applied twice"
    event_ids = await pool.fetch("SELECT event_id FROM outbox WHERE topic LIKE '%custody.status-changed%'")
    assert sorted(r["event_id"] for r in event_ids) == sorted(event_id_for("csv-jail", f"r{n}") for n in range(10))
    assert await files.process_pending_files(pool, ingest_settings) == 0
