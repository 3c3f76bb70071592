"""Feed files as the CLI sends them: JSON records in batches with stable idempotency keys, CSV files as a stream."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHUNK_BYTES = 64 * 1024
MAX_BATCH_SIZE = 10_000
"""The ingest service refuses larger JSON batches (``INGEST_MAX_RECORDS_PER_BATCH`` is at least 5,000)."""


class FeedFileError(ValueError):
    """The file cannot be sent as it is; the message says why in plain words."""


def is_csv(path: Path) -> bool:
    return path.suffix.lower() == ".csv"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def parse_records(text: str) -> list[dict[str, Any]]:
    """Records from a JSON array, or from an object ``{"records": [...]}`` as the API itself takes them."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise FeedFileError(f"not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})") from None
    records = data.get("records") if isinstance(data, dict) else data
    if not isinstance(records, list):
        raise FeedFileError('expected a JSON array of records or an object {"records": [...]}')
    for position, record in enumerate(records):
        if not isinstance(record, dict):
            raise FeedFileError(f"record {position} is not a JSON object")
    return records


def read_records(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise FeedFileError("the file is not UTF-8 text") from None
    return parse_records(text)


def batches(records: Sequence[dict[str, Any]], size: int) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """(offset of the batch's first record in the file, the batch), in file order."""
    if size < 1:
        raise ValueError("the batch size must be at least 1")
    for start in range(0, len(records), size):
        yield start, list(records[start : start + size])


def idempotency_key(file_digest: str, batch_size: int, number: int) -> str:
    """The same file cut the same way gives the same keys, so re-running a push after a failure is safe: batches
    the service already took are answered from its first answer instead of being applied again. The batch size is
    part of the key because another cut gives other bodies, which the service would refuse under an old key."""
    return f"cw-{file_digest[:32]}-{batch_size}-{number}"


def count_csv_rows(path: Path) -> int:
    """Data rows (the header excluded) as the service counts them: quoted line breaks count once, blank rows not."""
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as stream:
        rows = sum(1 for row in csv.reader(stream) if any(cell.strip() for cell in row))
    return max(rows - 1, 0)


def file_chunks(path: Path, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    with path.open("rb") as stream:
        yield from iter(lambda: stream.read(chunk_bytes), b"")


@dataclass
class Rejection:
    position: int
    """Index of the record in the JSON file (0-based), or the CSV data row number (the first data row is 1)."""
    record_id: str | None
    reason: str


@dataclass
class PushSummary:
    """What the service answered for every record of the file, added up over the batches."""

    counts: dict[str, int] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)
    batches: int = 0

    def add_batch(self, offset: int, answer: dict[str, Any]) -> None:
        """Add one batch answer (``BatchResult``); record positions become positions in the whole file."""
        self.batches += 1
        for outcome, count in (answer.get("summary") or {}).items():
            self.counts[outcome] = self.counts.get(outcome, 0) + int(count)
        for result in answer.get("results") or []:
            if result.get("result") == "rejected":
                self.rejections.append(
                    Rejection(offset + int(result.get("index", 0)), result.get("record_id"), str(result.get("reason")))
                )

    def add_job(self, job: dict[str, Any]) -> None:
        """Take the outcome of a processed CSV job (``FileJob``)."""
        self.batches += 1
        for outcome, count in (job.get("summary") or {}).items():
            self.counts[outcome] = self.counts.get(outcome, 0) + int(count)
        if "rejected" not in self.counts and job.get("rows_rejected"):
            self.counts["rejected"] = int(job["rows_rejected"])
        for error in job.get("errors") or []:
            self.rejections.append(
                Rejection(int(error.get("row", 0)), error.get("record_id"), str(error.get("reason")))
            )

    @property
    def rejected(self) -> int:
        return self.counts.get("rejected", 0)

    @property
    def total(self) -> int:
        return sum(self.counts.values())
