"""Bodies drawn from the published OpenAPI of ``POST /v1/subscriptions`` and ``POST /v1/unsubscribe/{token}``
(schemathesis, positive mode) and posted to the running service: each is accepted, or refused with a status its
operation documents and one of the codes documented for that status. Never a 500, never FastAPI's validation error
(a 422 with a list of errors) for a body the schema allows."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, Phase, given, settings

from services.subscription.settings import SubscriptionSettings
from tests.subscription.conftest import AGENCY_ID, Harness, started

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import schemathesis

EXAMPLES = 60


@pytest.fixture
async def unlimited(subscription_settings: SubscriptionSettings, pool: asyncpg.Pool) -> AsyncIterator[Harness]:
    """The service with rate limits out of the way, so every drawn body reaches the rules it is about."""
    roomy = subscription_settings.model_copy(
        update={"subscribe_limit_per_client_per_hour": 10_000, "subscribe_limit_per_contact_per_day": 10_000}
    )
    async with started(roomy, pool) as harness:
        yield harness


def drawn(document: dict[str, Any], path: str, method: str, examples: int) -> list[schemathesis.Case[Any]]:
    """Requests the operation's published schema allows (synchronously: hypothesis runs outside the event loop)."""
    operation = schemathesis.openapi.from_dict(document)[path][method]
    cases: list[schemathesis.Case[Any]] = []

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=schemathesis.GenerationMode.POSITIVE))
    def collect(case: schemathesis.Case[Any]) -> None:
        cases.append(case)

    collect()
    return cases


def documented_codes(document: dict[str, Any], path: str, method: str) -> dict[int, set[str] | None]:
    """Each documented status with the problem codes it lists (None: a status documented without a code list)."""
    responses = document["paths"][path][method.lower()]["responses"]
    codes: dict[int, set[str] | None] = {}
    for status, response in responses.items():
        schemas = [media.get("schema", {}) for media in response.get("content", {}).values()]
        listed: set[str] | None = None
        for schema in schemas:
            for option in schema.get("anyOf", [schema]):
                enum = option.get("properties", {}).get("code", {}).get("enum")
                if enum is not None:
                    listed = (listed or set()) | set(enum)
        codes[int(status)] = listed
    return codes


def problems_with(status: int, body: Any, codes: dict[int, set[str] | None], *, success: int) -> list[str]:
    if status == success:
        return []
    if status not in codes:
        return [f"undocumented status {status}"]
    if status == 422 and isinstance(body, dict) and isinstance(body.get("detail"), list):
        return ["FastAPI's validation error for a body the schema allows"]
    listed = codes[status]
    code = body.get("code") if isinstance(body, dict) else None
    if listed is not None and code not in listed:
        return [f"{status} with code {code!r}, not one of {sorted(listed)}"]
    return []


async def test_every_subscription_the_schema_allows_is_created_or_refused_as_documented(unlimited: Harness) -> None:
    document = (await unlimited.client.get("/openapi.json")).json()
    codes = documented_codes(document, "/v1/subscriptions", "POST")
    assert {404, 409, 422, 429} <= codes.keys()
    assert "unknown_agency" in (codes[404] or set())
    problems: list[str] = []
    statuses: Counter[str] = Counter()
    for case in drawn(document, "/v1/subscriptions", "POST", EXAMPLES):
        body = case.body
        assert isinstance(body, dict)
        # A drawn agency or time zone is almost never one the service knows: each body is also sent for the agency
        # it knows, and in a time zone it knows (still bodies the schema allows).
        known = {**body, "agency_id": AGENCY_ID}
        for attempt in (body, known, {**known, "timezone": "America/Chicago"}):
            response = await unlimited.client.post("/v1/subscriptions", json=attempt)
            answer = response.json()
            statuses[f"{response.status_code} {answer.get('code', '')}"] += 1
            found = problems_with(response.status_code, answer, codes, success=201)
            # Never the body: it may hold a contact point.
            problems += [f"{problem} (detail {str(answer.get('detail'))[:120]!r})" for problem in found]
    assert not problems, problems
    assert statuses["201 "] > 0, f"some drawn subscriptions are created: {statuses}"


async def test_every_unsubscribe_the_schema_allows_is_answered_as_documented(unlimited: Harness) -> None:
    document = (await unlimited.client.get("/openapi.json")).json()
    codes = documented_codes(document, "/v1/unsubscribe/{token}", "POST")
    assert {404} <= codes.keys()
    problems: list[str] = []
    for case in drawn(document, "/v1/unsubscribe/{token}", "POST", EXAMPLES // 2):
        assert case.path_parameters is not None
        token = case.path_parameters["token"]  # percent-encoded already
        assert isinstance(case.body, dict)
        form = {name: value for name, value in case.body.items() if isinstance(value, str)}
        response = await unlimited.client.post(f"/v1/unsubscribe/{token}", data=form)
        if response.status_code not in (200, 404):
            problems.append(f"{response.status_code} for a one-click unsubscribe the schema allows")
    assert not problems, problems
