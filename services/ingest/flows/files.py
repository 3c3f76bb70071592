"""CSV feed files: streamed into the database in chunks on upload, then applied by a background job in slices.

Each slice of rows is applied in one transaction together with the job's progress, so a crash resumes at the
first unapplied row and never emits an event twice. Row numbers count data rows: the first row after the header
is row 1.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg

from services.ingest.agencies import store as agencies_store
from services.ingest.agencies.domain import Agency
from services.ingest.domain.changes import Parsed, RecordResult
from services.ingest.domain.csv_files import ChunkedCsvReader, header_problem, row_to_record
from services.ingest.domain.records import RecordRejectedError, normalise_record
from services.ingest.feed_health.flows import note_feed_received
from services.ingest.flows.batches import apply_records, refresh_metrics
from services.ingest.settings import IngestSettings
from services.ingest.store import batches as store

log = logging.getLogger(__name__)


class FileRejectedError(ValueError):
    """The upload as a whole is refused; ``status_code`` is the HTTP answer."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


async def receive_file(
    pool: asyncpg.Pool, settings: IngestSettings, agency: Agency, chunks: AsyncIterator[bytes]
) -> str:
    """Stream an upload into stored chunks (never holding the whole file); returns the job id."""
    job_id = str(uuid.uuid4())
    digest = hashlib.sha256()
    size = 0
    chunk_no = 0
    buffer = bytearray()
    async with pool.acquire() as connection:
        await store.insert_batch(
            connection, batch_id=job_id, agency_id=agency.agency_id, kind="csv", status="receiving"
        )
        try:
            async for piece in chunks:
                size += len(piece)
                if size > settings.max_file_bytes:
                    raise FileRejectedError(413, f"file is larger than the limit of {settings.max_file_bytes} bytes")
                digest.update(piece)
                buffer += piece
                while len(buffer) >= settings.file_chunk_bytes:
                    await store.insert_chunk(connection, job_id, chunk_no, bytes(buffer[: settings.file_chunk_bytes]))
                    del buffer[: settings.file_chunk_bytes]
                    chunk_no += 1
            if size == 0:
                raise FileRejectedError(400, "file is empty")
            if buffer:
                await store.insert_chunk(connection, job_id, chunk_no, bytes(buffer))
            async with connection.transaction():
                await store.complete_upload(connection, job_id, size, digest.hexdigest())
                await note_feed_received(connection, settings, agency.agency_id, datetime.now(UTC))
        except BaseException as error:
            with contextlib.suppress(Exception):
                await store.set_batch_status(connection, job_id, "failed", f"upload incomplete: {error}"[:500])
            raise
    return job_id


class FileJob:
    """Applies one stored CSV file, resuming after the rows its progress says are done."""

    def __init__(self, pool: asyncpg.Pool, settings: IngestSettings, job_id: str) -> None:
        self._pool = pool
        self._settings = settings
        self._job_id = job_id

    async def _chunk(self, chunk_no: int) -> bytes | None:
        async with self._pool.acquire() as connection:
            return await store.read_chunk(connection, self._job_id, chunk_no)

    async def run(self) -> None:
        reader = ChunkedCsvReader(self._chunk)
        rows_done = 0
        try:
            header_row = await reader.next_row()
            async with self._pool.acquire() as connection:
                agency_id = await store.agency_of_batch(connection, self._job_id)
                agency = await agencies_store.get_agency(connection, agency_id)
            if agency is None:
                raise LookupError(f"job {self._job_id} has no agency")
            if header_row is None:
                await self._fail("file has no header row")
                return
            header = {name.strip(): position for position, name in enumerate(header_row)}
            problem = header_problem(header, agency.csv_columns)
            if problem is not None:
                await self._fail(problem)
                return
            while True:
                rows: list[tuple[int, list[str] | str]] = []
                while len(rows) < self._settings.file_rows_per_transaction:
                    try:
                        row = await reader.next_row()
                    except csv.Error as error:
                        rows_done += 1
                        rows.append((rows_done, f"malformed CSV row: {error}"))
                        continue
                    if row is None:
                        break
                    if not any(cell.strip() for cell in row):
                        continue
                    rows_done += 1
                    rows.append((rows_done, row))
                finished = await self._apply(rows, header, done_through=rows_done, last=len(rows) == 0)
                if finished:
                    return
        except UnicodeDecodeError as error:
            await self._fail(f"file is not UTF-8 text (byte {error.start} of a chunk near row {rows_done + 1})")

    async def _apply(
        self, rows: list[tuple[int, list[str] | str]], header: dict[str, int], *, done_through: int, last: bool
    ) -> bool:
        """Apply rows the job has not applied yet (with its progress) in one transaction; True when the job is done."""
        async with self._pool.acquire() as connection, connection.transaction():
            locked = await store.lock_batch(connection, self._job_id)
            if locked is None:
                raise LookupError(f"no job {self._job_id}")
            job, _ = locked
            if job.status in ("processed", "failed"):
                return True
            fresh = [(number, row) for number, row in rows if number > job.rows_processed]
            agency = await agencies_store.get_agency(connection, job.agency_id, for_update=True)
            if agency is None:
                raise LookupError(f"job {self._job_id} has no agency")
            counts: Counter[RecordResult] = Counter()
            if fresh:
                entries = self._parse(fresh, header, agency, job.received_at)
                applied = await apply_records(
                    connection, self._settings, agency, entries, batch_id=self._job_id, received_at=job.received_at
                )
                counts = applied.counts
                await store.insert_row_errors(
                    connection,
                    self._job_id,
                    [(o["index"], o["record_id"], o["reason"]) for o in applied.outcomes if o["result"] == "rejected"],
                )
                summary = Counter({key: int(value) for key, value in (job.result or {}).items()})
                summary.update({result.value: count for result, count in counts.items()})
                await store.set_batch_result(connection, self._job_id, dict(summary))
                await store.record_file_progress(
                    connection,
                    self._job_id,
                    processed=max(done_through - job.rows_processed, 0),
                    accepted=counts[RecordResult.ACCEPTED],
                    rejected=counts[RecordResult.REJECTED],
                )
            if last:
                await store.set_batch_status(connection, self._job_id, "processed")
        if counts:
            await refresh_metrics(self._pool, agency.agency_id, counts)
        return last

    def _parse(
        self, rows: list[tuple[int, list[str] | str]], header: dict[str, int], agency: Agency, received_at: datetime
    ) -> list[tuple[int, Parsed]]:
        zone = ZoneInfo(agency.timezone)
        skew = timedelta(seconds=self._settings.max_clock_skew_seconds)
        entries: list[tuple[int, Parsed]] = []
        for number, row in rows:
            if isinstance(row, str):
                entries.append((number, RecordRejectedError(row)))
                continue
            if len(row) != len(header):
                entries.append(
                    (number, RecordRejectedError(f"row has {len(row)} fields; the header has {len(header)}"))
                )
                continue
            raw = row_to_record(header, agency.csv_columns, row)
            try:
                entries.append(
                    (
                        number,
                        normalise_record(
                            raw, status_map=agency.status_map, timezone=zone, now=received_at, max_skew=skew
                        ),
                    )
                )
            except RecordRejectedError as rejected:
                entries.append((number, rejected))
        return entries

    async def _fail(self, reason: str) -> None:
        async with self._pool.acquire() as connection:
            await store.set_batch_status(connection, self._job_id, "failed", reason)
        log.warning("file job %s failed: %s", self._job_id, reason)


async def process_pending_files(pool: asyncpg.Pool, settings: IngestSettings) -> int:
    """Apply every uploaded file not yet fully applied (also those a crash interrupted); returns how many."""
    async with pool.acquire() as connection:
        job_ids = await store.batches_to_recover(connection, "csv", datetime.now(UTC))
    for job_id in job_ids:
        try:
            await FileJob(pool, settings, job_id).run()
        except Exception:  # the job stays pending and is retried; the other files still go through
            log.exception("file job %s failed; will retry", job_id)
    return len(job_ids)
