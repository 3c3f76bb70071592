"""The CloudEvents 1.0 envelope of every event (structured JSON mode), and encoding and decoding it.

Each record's value is the whole event; its only header is ``content-type: application/cloudevents+json`` (no
``ce_`` headers), which the official SDKs read as structured mode. Tracing follows the distributed-tracing extension
(``traceparent``). The payloads inside, and the registry of event types, are in :mod:`shared.events`.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.events import EVENT_TYPES, TYPE_OF, Payload

DataT = TypeVar("DataT", bound=Payload)


STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
KAFKA_HEADERS: list[tuple[str, bytes]] = [("content-type", STRUCTURED_CONTENT_TYPE.encode())]
"""The headers of every record we publish: structured content mode of the CloudEvents Kafka binding (the whole
event in the value, no ``ce_`` headers), which the official SDKs read."""

TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


def event_source(service: str) -> str:
    """The CloudEvents ``source`` of everything ``service`` publishes: one spelling per service."""
    return f"/custody-watch/{service}"


def _hex(value: str, length: int) -> str:
    if re.fullmatch(f"[0-9a-f]{{{length}}}", value):
        return value
    return hashlib.sha256(value.encode()).hexdigest()[:length]


def traceparent(trace_id: str, span_of: str) -> str:
    """A W3C ``traceparent`` for the trace ``trace_id`` (32 hex digits, or any id, hashed to them) and a span that
    is the event ``span_of``: deterministic, so an event encoded twice is encoded the same."""
    return f"00-{_hex(trace_id, 32)}-{_hex(span_of, 16)}-01"


class CloudEvent(BaseModel, Generic[DataT]):
    """A CloudEvents 1.0 envelope with the distributed-tracing extension's ``traceparent``, carried end to end."""

    model_config = ConfigDict(frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str
    source: str
    type: str
    subject: str | None = None
    time: datetime
    datacontenttype: Literal["application/json"] = "application/json"
    traceparent: str = Field(pattern=TRACEPARENT.pattern)
    data: DataT

    @model_validator(mode="before")
    @classmethod
    def _traceid_of_earlier_releases(cls, document: Any) -> Any:
        """Events written before ``traceparent`` carried a ``traceid``: still readable, on the same trace."""
        if isinstance(document, dict) and "traceparent" not in document and isinstance(document.get("traceid"), str):
            earlier = {key: value for key, value in document.items() if key != "traceid"}
            earlier["traceparent"] = traceparent(document["traceid"], str(document.get("id", "")))
            return earlier
        return document

    @property
    def trace_id(self) -> str:
        return self.traceparent.split("-")[1]


class EventDecodeError(ValueError):
    """A message that can never be processed (a poison message): it goes to the dead-letter topic."""


def new_event(
    data: DataT,
    *,
    source: str,
    subject: str | None = None,
    event_id: str | None = None,
    trace_id: str | None = None,
    at: datetime | None = None,
) -> CloudEvent[DataT]:
    event_id = event_id or str(uuid.uuid4())
    return CloudEvent[DataT](
        id=event_id,
        source=source,
        type=TYPE_OF[type(data)],
        subject=subject,
        time=at or datetime.now(UTC),
        traceparent=traceparent(trace_id or event_id, event_id),
        data=data,
    )


def encode(event: CloudEvent[Any]) -> bytes:
    return event.model_dump_json(exclude_none=True).encode()


def decode(raw: bytes | None) -> CloudEvent[Payload]:
    """Parse and validate a structured-mode CloudEvent; raise :class:`EventDecodeError` saying why not."""
    if raw is None:
        raise EventDecodeError("message has no value")
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise EventDecodeError(f"value is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise EventDecodeError("value is not a JSON object")
    if document.get("specversion") != "1.0":
        raise EventDecodeError(f"unsupported CloudEvents specversion {document.get('specversion')!r}")
    event_type = document.get("type")
    model = EVENT_TYPES.get(event_type) if isinstance(event_type, str) else None
    if model is None:
        raise EventDecodeError(f"unknown event type or schema version {event_type!r}")
    try:
        return CloudEvent[model].model_validate(document)  # type: ignore[valid-type]
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in issue['loc'])}: {issue['msg']}" for issue in error.errors()
        )
        raise EventDecodeError(f"invalid {event_type}: {problems}") from None
