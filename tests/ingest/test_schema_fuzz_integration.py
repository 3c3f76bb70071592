"""Request bodies drawn from the JSON push's published schema: none is a 500, and every record is answered by
itself, accepted or refused for one of the rules the schema's description lists (never for a rule it does not)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from services.ingest.domain.changes import RecordResult
from services.ingest.domain.records import DEFAULT_STATUS_MAP, RECORD_RULES
from tests.ingest.conftest import create_agency, push

pytestmark = pytest.mark.integration

BODIES = 80
PUSH = "/v1/agencies/{agency_id}/custody-events"


def draw_bodies(spec: dict[str, Any], agency_id: str) -> list[dict[str, Any]]:
    """Bodies valid by the published schema; every other record gets one of the agency's codes and an identifier,
    so the rules behind the status map are reached too (the record stays valid by the schema)."""
    schema = schemathesis.openapi.from_dict(spec)
    schema.config.generation.update(allow_x00=False)  # a NUL refuses the batch whole, as its description says
    strategy = schema[PUSH]["POST"].as_strategy(path_parameters={"agency_id": agency_id})
    bodies: list[dict[str, Any]] = []

    @settings(
        max_examples=BODIES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def collect(case: schemathesis.Case[Any]) -> None:
        assert isinstance(case.body, dict)
        bodies.append(case.body)

    collect()
    codes = sorted(DEFAULT_STATUS_MAP)
    for n, body in enumerate(bodies):
        for i, record in enumerate(body["records"]):
            if (n + i) % 2:
                record["status_code"] = codes[(n + i) % len(codes)]
                record["person_number"] = record.get("person_number") or f"P-{n}-{i}"
    return bodies


async def test_records_valid_by_the_published_schema_are_answered_for_documented_reasons(
    ingest: httpx.AsyncClient,
) -> None:
    auth = await create_agency(ingest, "fuzz")
    spec = (await ingest.get("/openapi.json")).json()
    published = spec["paths"][PUSH]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert all(rule in published["description"] for rule in RECORD_RULES)
    bodies = draw_bodies(spec, "fuzz")
    assert len(bodies) == BODIES
    seen: set[str] = set()
    for body in bodies:
        response = await push(ingest, "fuzz", auth, body["records"])
        assert response.status_code == 200, (body, response.text)
        results = response.json()["results"]
        assert [result["index"] for result in results] == list(range(len(body["records"])))
        for record, result in zip(body["records"], results, strict=True):
            seen.add(result["result"])
            assert result["result"] in set(RecordResult), result
            if result["result"] == RecordResult.REJECTED:
                reason = result["reason"] or ""
                assert any(rule in reason for rule in RECORD_RULES), f"undocumented rejection {reason!r} of {record}"
    assert {RecordResult.ACCEPTED, RecordResult.REJECTED} <= seen
