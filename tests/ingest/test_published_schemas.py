"""The published OpenAPI of the three custody-feed uploads states what they accept (no servers needed)."""

from __future__ import annotations

from typing import Any

from services.ingest.app import create_app
from services.ingest.domain.records import CSV_FIELDS, RECORD_RULES, REQUIRED_CSV_FIELDS
from services.ingest.settings import IngestSettings

FEEDS = "/v1/agencies/{agency_id}"


def spec() -> dict[str, Any]:
    openapi: dict[str, Any] = create_app(IngestSettings(environment="test")).openapi()
    return openapi


def test_json_push_publishes_a_self_contained_schema_with_its_limits_and_rules() -> None:
    settings = IngestSettings(environment="test")
    operation = spec()["paths"][f"{FEEDS}/custody-events"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert "$defs" not in str(schema), "every definition is inlined: a '#/$defs' reference would not resolve"
    records = schema["properties"]["records"]
    assert (records["minItems"], records["maxItems"]) == (1, settings.max_records_per_batch)
    record = records["items"]
    assert set(record["required"]) == {"record_id", "status_code", "effective_at"}
    assert record["properties"]["record_id"]["pattern"] == r"\S"
    assert record["properties"]["case_numbers"]["items"]["maxLength"] == 64
    assert "enum" in str(record["properties"]["immigration_stage"])
    for rule in RECORD_RULES:
        assert rule in schema["description"]
    assert {"400", "413", "422"} <= set(operation["responses"])


def test_csv_upload_documents_every_column_and_its_content_type() -> None:
    operation = spec()["paths"][f"{FEEDS}/custody-files"]["post"]
    assert set(operation["requestBody"]["content"]) == {"text/csv"}
    for column in CSV_FIELDS:
        assert f"`{column}`" in operation["description"]
    for column in REQUIRED_CSV_FIELDS:
        assert f"`{column}` (required)" in operation["description"]


def test_niem_upload_documents_its_exchanges_elements_and_content_types() -> None:
    operation = spec()["paths"][f"{FEEDS}/custody-events/niem"]["post"]
    assert set(operation["requestBody"]["content"]) == {"application/xml", "text/xml"}
    description = operation["description"]
    for element in ("BookingReport", "CustodyReleaseReport", "CustodyStatusChangeReport", "nc:ActivityDate"):
        assert element in description
    assert {"400", "413", "415", "422"} <= set(operation["responses"])
