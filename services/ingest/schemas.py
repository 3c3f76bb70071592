"""HTTP models of the custody-feed uploads (JSON, CSV, NIEM) and of the admin decisions shared by several features."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field

from services.ingest import niem
from services.ingest.domain.changes import RecordResult
from services.ingest.domain.records import CSV_FIELDS, RECORD_RULES, REQUIRED_CSV_FIELDS, RecordIn


class RecordOutcomeOut(BaseModel):
    index: int = Field(description="Position in the batch (JSON) or data row number, header excluded (CSV).")
    record_id: str | None
    result: RecordResult
    reason: str | None = None
    event_id: str | None = Field(default=None, description="The custody.status-changed event, when one was emitted.")


class BatchResult(BaseModel):
    batch_id: str
    agency_id: str
    received_at: datetime
    summary: dict[str, int]
    results: list[RecordOutcomeOut]


class RowError(BaseModel):
    row: int
    record_id: str | None
    reason: str


class FileJob(BaseModel):
    job_id: str
    agency_id: str
    status: str = Field(description="receiving, pending, processing, processed or failed")
    received_at: datetime
    processed_at: datetime | None
    size_bytes: int
    rows_processed: int
    rows_accepted: int
    rows_rejected: int
    summary: dict[str, int]
    error: str | None
    errors: list[RowError]


Operator = Annotated[str, Field(min_length=1, max_length=100, description="Who decides (the operator's login).")]
Reason = Annotated[str, Field(min_length=1, max_length=500)]


# --- the uploads' published request bodies ----------------------------------------------------------------------


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema with its ``$defs`` put in place: self-contained inside an OpenAPI requestBody."""
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            reference = node.get("$ref")
            if isinstance(reference, str) and reference.startswith("#/$defs/"):
                return resolve(definitions[reference.removeprefix("#/$defs/")]) | {
                    key: resolve(value) for key, value in node.items() if key != "$ref"
                }
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def _rules() -> str:
    return "\n".join(f"- … {rule} …" for rule in RECORD_RULES)


def json_batch_schema(max_records: int) -> dict[str, Any]:
    """The JSON push's body: what each record may hold, as :class:`RecordIn` validates it."""
    return {
        "type": "object",
        "title": "Batch",
        "required": ["records"],
        "description": "A JSON array of records is accepted too. No string may hold a NUL (U+0000) character: "
        "PostgreSQL cannot store one, so such a batch is refused whole (422). A record valid by this schema is "
        "answered accepted, duplicate, stale or sealed, or rejected with a reason naming one of these rules:\n"
        + _rules(),
        "properties": {
            "records": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_records,
                "items": _inlined(RecordIn.model_json_schema()),
            }
        },
    }


BATCH_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "empty body, malformed JSON or JSON nested too deeply"},
    413: {"description": "more records than a batch may have, or a body larger than the limit"},
    422: {
        "description": "no records, a NUL character in a string, or an Idempotency-Key already used for another body"
    },
}


def _csv_columns() -> str:
    properties = RecordIn.model_json_schema()["properties"]
    lines = []
    for name in CSV_FIELDS:
        required = " (required)" if name in REQUIRED_CSV_FIELDS else ""
        description = properties[name].get("description", "")
        lines.append(f"- `{name}`{required}: {description}".rstrip(": "))
    return "\n".join(lines)


CSV_UPLOAD_DESCRIPTION = f"""A UTF-8 CSV file (a byte-order mark is allowed) with a header row. The file is stored in
chunks as it arrives and applied in the background; follow the job at `GET .../custody-files/{{job_id}}`, which lists
each rejected row with its reason (row 1 is the first row after the header).

Columns, by their default header (an agency's `csv_columns` maps each field to its own header; other columns are
ignored; an empty cell is an absent value). The header must hold `record_id`, `status_code`, `effective_at` and at
least one of `person_number`, `booking_number`, `case_numbers`; without them the whole file fails. Each cell is read
as the JSON push reads the field of the same name; `case_numbers` are separated by `;`.

{_csv_columns()}

A row is rejected for any reason a JSON record would be, and for a field count other than the header's or a
malformed CSV row."""


def csv_upload_schema() -> dict[str, Any]:
    return {
        "type": "string",
        "format": "binary",
        "description": "CSV with a header row: " + ", ".join(CSV_FIELDS) + " (or the agency's own headers).",
    }


NIEM_UPLOAD_DESCRIPTION = f"""A BookingReport, CustodyReleaseReport or CustodyStatusChangeReport (NIEM 3.0, Justice
5.0-5.2). Each custody part (booking, release, status change) is answered like a record of the JSON push, by its
position in the document: accepted, duplicate, stale, sealed or rejected with the reason. The raw document is stored
before it is read; a retry with the same `Idempotency-Key` and body gets the first answer. A DTD, an entity or an
external reference is refused (400).

How the elements are read:

{niem.__doc__}"""

NIEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "not well-formed XML, or a DTD / entity / external reference (refused)"},
    413: {"description": "too large, or more custody parts than a batch may have"},
    415: {"description": "not an XML content type"},
    422: {"description": "unknown root element or NIEM version, no custody part, or Idempotency-Key reused"},
}


def niem_upload_schema() -> dict[str, Any]:
    root_elements = ", ".join(f"{{{exchange.namespace}}}{exchange.value}" for exchange in niem.Exchange)
    return {"type": "string", "description": f"An XML document whose root element is one of {root_elements}."}
