"""Helpers for the hostile-input and privacy end-to-end tests: poison messages, reading whole topics, a bounded
schemathesis sweep, and finding a contact point in text in any of the ways it could be written."""

from __future__ import annotations

import json
import re
import time
import types
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from datetime import time as time_of_day
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import requests
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from pydantic import BaseModel
from requests.adapters import HTTPAdapter

from shared.envelope import CloudEvent
from shared.events import EVENT_TYPE_PREFIX, TYPE_OF, Payload

# --- poison messages ------------------------------------------------------------------------------------------------

PoisonKind = Literal["not-json", "unknown-type", "missing-field"]
POISON_KINDS: tuple[PoisonKind, ...] = ("not-json", "unknown-type", "missing-field")


SCALAR_EXAMPLES: dict[Any, Callable[[], Any]] = {
    bool: lambda: True,
    int: lambda: 1,
    float: lambda: 1.0,
    str: lambda: "x",
    datetime: lambda: datetime.now(UTC).isoformat(),
    time_of_day: lambda: "07:00:00",
}


def _example_value(annotation: Any) -> Any:
    """A valid JSON value for a field's type (enough for the payload models of :mod:`shared.events`)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):
        value = _example_value(next(arg for arg in args if arg is not type(None)))
    elif origin is Literal:
        value = args[0]
    elif origin is list:
        value = [_example_value(args[0])]
    elif annotation in SCALAR_EXAMPLES:
        value = SCALAR_EXAMPLES[annotation]()
    elif isinstance(annotation, type) and issubclass(annotation, Enum):
        value = next(iter(annotation)).value
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        value = example_data(annotation)
    else:
        raise TypeError(f"no example for {annotation!r}")
    return value


def example_data(model: type[BaseModel]) -> dict[str, Any]:
    """The required fields of ``model``, each with a valid value."""
    return {name: _example_value(field.annotation) for name, field in model.model_fields.items() if field.is_required()}


def envelope(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    event_id = str(uuid.uuid4())
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "e2e/hostile",
        "type": event_type,
        "time": datetime.now(UTC).isoformat(),
        "datacontenttype": "application/json",
        "traceid": event_id,
        "data": data,
    }


@dataclass(frozen=True)
class Poison:
    kind: PoisonKind
    value: bytes
    expected_error: tuple[str, ...]
    """Every one of these must appear in the dead letter's ``cw-error`` header."""


def poison(kind: PoisonKind, payload: type[Payload]) -> Poison:
    """A message no consumer of ``payload``'s topic can process, and the reason its dead letter must give."""
    if kind == "not-json":
        return Poison(kind, b"\x00<custody>not json at all", ("value is not JSON",))
    if kind == "unknown-type":
        event_type = f"{EVENT_TYPE_PREFIX}no-such-event.v9"
        return Poison(kind, json.dumps(envelope(event_type, {})).encode(), ("unknown event type", event_type))
    event_type = TYPE_OF[payload]
    data = example_data(payload)
    CloudEvent[payload].model_validate(envelope(event_type, data))  # type: ignore[valid-type]  # valid as built
    missing = next(iter(data))
    del data[missing]
    return Poison(
        kind,
        json.dumps(envelope(event_type, data)).encode(),
        (f"invalid {event_type}", f"data.{missing}", "Field required"),
    )


# --- reading topics -------------------------------------------------------------------------------------------------


async def read_all(
    bootstrap: str, topics: Iterable[str], *, committed_only: bool, within: float = 60.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record now on ``topics`` (all partitions, from the beginning), without joining a consumer group.

    ``committed_only=False`` also returns records of aborted transactions: they are on the log all the same.
    """
    topics = list(topics)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topics) if topics else []
    finally:
        await admin.close()
    partitions = [
        TopicPartition(topic["topic"], partition["partition"])
        for topic in described
        if not topic.get("error_code")
        for partition in topic.get("partitions", [])
    ]
    if not partitions:
        return []
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed" if committed_only else "read_uncommitted",
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        # Under read_committed the end offsets are the last stable offsets: open transactions are not waited for.
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        records: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + within
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {len(partitions)} partitions to their end in {within:.0f} s")
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for found in batch.values():
                records.extend(found)
        return records
    finally:
        await consumer.stop()


def header(record: ConsumerRecord[bytes, bytes], name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            return bytes(value).decode(errors="replace")
    return None


# --- contact points in text -----------------------------------------------------------------------------------------


def mask(contact: str) -> str:
    """How a contact may appear in a test's failure message: never in clear."""
    if "@" in contact:
        return f"{contact[0]}•••@{contact.split('@', 1)[1]}"
    return f"{contact[:2]}•••••{contact[-4:]}"


def contact_pattern(contact: str) -> re.Pattern[str]:
    """Every way a phone number or email could be written: E.164, national digits, (512) 555-0100, 512.555.0100,
    URL-encoded; an email in any case, with its @ URL-encoded too."""
    if "@" in contact:
        local, domain = contact.split("@", 1)
        return re.compile(rf"{re.escape(local)}(?:@|%40|\\u0040)\s*{re.escape(domain)}", re.IGNORECASE)
    digits = re.sub(r"\D", "", contact)
    national = digits[1:] if len(digits) == 11 and digits.startswith("1") else digits
    if len(national) != 10:
        return re.compile(re.escape(digits))
    area, exchange, line = national[:3], national[3:6], national[6:]
    separator = r"[\s.\-\u00a0]*"
    return re.compile(rf"\(?{area}\)?{separator}{exchange}{separator}{line}")


def find_contacts(text: str, patterns: dict[str, re.Pattern[str]]) -> list[str]:
    """The contacts (masked) that occur in ``text``."""
    return [mask(contact) for contact, pattern in patterns.items() if pattern.search(text)]


# --- schemathesis ---------------------------------------------------------------------------------------------------


class SourceAddressAdapter(HTTPAdapter):
    """Send from another loopback address, so the sweep's requests count against their own per-client rate limits
    and not against those of the other tests (which call from 127.0.0.1)."""

    def __init__(self, source_address: str) -> None:
        self._source_address = source_address
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self._source_address, 0)
        super().init_poolmanager(*args, **kwargs)


def sweep_session(source_address: str = "127.0.0.2") -> requests.Session:
    session = requests.Session()
    adapter = SourceAddressAdapter(source_address)
    session.mount("http://", adapter)
    return session


@dataclass
class Sweep:
    schema_path: Path
    base_url: str
    session: requests.Session = field(default_factory=sweep_session)
    headers: dict[str, str] = field(default_factory=dict)
    path_parameters: dict[str, str] = field(default_factory=dict)
    max_examples: int = 8
    wanted: Callable[[str], bool] = lambda label: True
    """Which operations to call, by label ("POST /logout")."""
    allowed_statuses: frozenset[int] | None = None
    """If given, any other status is a problem too (e.g. signed out, only a redirect to the login page or 401)."""


@dataclass
class SweepResult:
    statuses: Counter[int] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    """One line per server error or disallowed status (never a request body: it may hold a contact point)."""

    @property
    def sent(self) -> int:
        return sum(self.statuses.values())


def run_sweep(sweep: Sweep, result: SweepResult | None = None) -> SweepResult:
    """Call every wanted operation of one OpenAPI document with generated requests, valid and invalid."""
    import schemathesis

    result = result or SweepResult()
    schema = schemathesis.openapi.from_path(sweep.schema_path)
    for loaded in schema.get_all_operations():
        operation = loaded.ok()  # type: ignore[union-attr]  # a contract we generate is always valid
        if sweep.wanted(operation.label):
            for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
                _sweep_operation(sweep, operation, mode, result)
    return result


def _sweep_operation(sweep: Sweep, operation: Any, mode: Any, result: SweepResult) -> None:
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.core.failures import FailureGroup

    names = {parameter.name for parameter in operation.path_parameters}
    fixed = {name: value for name, value in sweep.path_parameters.items() if name in names}
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=fixed or None)

    @settings(
        max_examples=sweep.max_examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def call(case: schemathesis.Case[Any]) -> None:
        try:
            response = case.call(
                base_url=sweep.base_url, session=sweep.session, headers=sweep.headers, allow_redirects=False
            )
        except requests.RequestException as error:
            result.statuses[0] += 1
            result.problems.append(f"{operation.label} ({mode}): no answer: {type(error).__name__}")
            return
        result.statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=[not_a_server_error], headers=sweep.headers)
        except FailureGroup:
            result.problems.append(f"{operation.label} ({mode}): {response.status_code} {response.text[:200]!r}")
            return
        if sweep.allowed_statuses is not None and response.status_code not in sweep.allowed_statuses:
            result.problems.append(f"{operation.label} ({mode}): unexpected {response.status_code}")

    try:
        call()
    except Unsatisfiable:
        # Nothing to make invalid (no parameters, no body): there is no negative request to send.
        if mode != schemathesis.GenerationMode.NEGATIVE:
            raise
