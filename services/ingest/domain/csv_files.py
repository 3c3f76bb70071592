"""Reading CSV feed files: rows from stored chunks, a row as a raw record, the header's required columns (pure: the
reader is handed a function that fetches a chunk).

Row numbers count data rows: the first row after the header is row 1.
"""

from __future__ import annotations

import codecs
import csv
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from services.ingest.domain.records import REQUIRED_CSV_FIELDS

IDENTIFIER_FIELDS = ("person_number", "booking_number", "case_numbers")


class _NeedMoreError(Exception):
    """The line buffer ran dry before the end of the file: fetch the next chunk."""


class ChunkedCsvReader:
    """Reads CSV rows from stored chunks one chunk at a time; a quoted field may span lines and chunks."""

    def __init__(self, fetch_chunk: Callable[[int], Awaitable[bytes | None]]) -> None:
        self._fetch = fetch_chunk
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="strict")
        self._lines: deque[str] = deque()
        self._partial = ""
        self._next_chunk = 0
        self._eof = False
        self._taken: list[str] = []
        self._reader = csv.reader(self)

    def __iter__(self) -> ChunkedCsvReader:
        return self

    def __next__(self) -> str:
        if not self._lines:
            if self._eof:
                raise StopIteration
            raise _NeedMoreError
        line = self._lines.popleft()
        self._taken.append(line)
        return line

    async def _fill(self) -> None:
        data = await self._fetch(self._next_chunk)
        if data is None:
            self._eof = True
            text = self._partial + self._decoder.decode(b"", final=True)
            self._partial = ""
            if text:
                self._lines.append(text)
            return
        self._next_chunk += 1
        pieces = (self._partial + self._decoder.decode(data)).split("\n")
        self._partial = pieces.pop()
        self._lines.extend(piece + "\n" for piece in pieces)

    async def next_row(self) -> list[str] | None:
        """The next row, None at the end; raises csv.Error or UnicodeDecodeError on a malformed file."""
        while True:
            self._taken = []
            try:
                return next(self._reader)
            except _NeedMoreError:
                self._lines.extendleft(reversed(self._taken))
                await self._fill()
            except StopIteration:
                return None


def row_to_record(header: dict[str, int], columns: dict[str, str], row: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for field, column in columns.items():
        position = header.get(column)
        if position is None or position >= len(row):
            continue
        value = row[position].strip()
        if not value:
            continue
        values[field] = [case for case in value.split(";") if case.strip()] if field == "case_numbers" else value
    return values


def header_problem(header: dict[str, int], columns: dict[str, str]) -> str | None:
    missing = sorted(columns[field] for field in REQUIRED_CSV_FIELDS if columns[field] not in header)
    if missing:
        return f"CSV header lacks required column(s) {missing}"
    if not any(columns[field] in header for field in IDENTIFIER_FIELDS):
        return f"CSV header has no identifier column (one of {[columns[f] for f in IDENTIFIER_FIELDS]})"
    return None
