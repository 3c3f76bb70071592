import contextlib
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.envelope import TRACEPARENT, EventDecodeError, decode, encode, event_source, new_event
from shared.events import CustodyStatusChanged, SubjectIdentifier
from shared.vocabulary import CustodyStatus, IdentifierKind, Urgency, normalise_identifier, urgency_of


def custody_change(**overrides: object) -> CustodyStatusChanged:
    fields: dict[str, object] = {
        "agency_id": "county-jail",
        "subject_id": "s-1",
        "identifiers": [SubjectIdentifier(kind=IdentifierKind.CASE_NUMBER, value="CR-1")],
        "status": CustodyStatus.RELEASED,
        "effective_at": datetime(2026, 11, 27, 12, tzinfo=UTC),
        "agency_record_id": "r-1",
        "feed_batch_id": "b-1",
        "received_at": datetime(2026, 11, 27, 12, 1, tzinfo=UTC),
    }
    fields.update(overrides)
    return CustodyStatusChanged.model_validate(fields)


def test_round_trip_keeps_every_field() -> None:
    event = new_event(custody_change(), source="/custody-watch/ingest", subject="county-jail/s-1")
    decoded = decode(encode(event))
    assert decoded == event
    assert isinstance(decoded.data, CustodyStatusChanged)
    assert decoded.type == "org.custodywatch.custody.status-changed.v1"
    assert decoded.traceparent == event.traceparent
    assert TRACEPARENT.match(event.traceparent), "W3C trace context, as the distributed-tracing extension says"


def test_a_trace_goes_on_through_the_events_it_causes() -> None:
    cause = new_event(custody_change(), source=event_source("ingest"))
    effect = new_event(custody_change(), source=event_source("matching"), trace_id=cause.trace_id)
    assert effect.trace_id == cause.trace_id
    assert effect.traceparent != cause.traceparent, "each event is a span of its own"
    again = [new_event(custody_change(), source="/t", event_id="e-1", at=cause.time) for _ in range(2)]
    assert again[0].traceparent == again[1].traceparent, "an event encoded twice is encoded the same"


def test_an_event_of_an_earlier_release_with_traceid_is_still_read_on_its_trace() -> None:
    event = new_event(custody_change(), source=event_source("ingest"), event_id="e-1")
    document = json.loads(encode(event))
    document.pop("traceparent")
    document["traceid"] = "e-1"
    decoded = decode(json.dumps(document).encode())
    assert decoded.traceparent == event.traceparent


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "no value"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"specversion": "0.3"}', "specversion"),
        (b'{"specversion": "1.0", "type": "org.custodywatch.custody.status-changed.v9"}', "unknown event type"),
    ],
)
def test_poison_messages_are_refused_with_the_reason(raw: bytes | None, reason: str) -> None:
    with pytest.raises(EventDecodeError, match=reason):
        decode(raw)


def test_missing_field_names_the_field() -> None:
    event = new_event(custody_change(), source="/test")
    document = encode(event).replace(b'"agency_id":"county-jail",', b"")
    with pytest.raises(EventDecodeError, match=r"data\.agency_id"):
        decode(document)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_the_decoder(raw: bytes) -> None:
    with contextlib.suppress(EventDecodeError):
        decode(raw)


def test_urgency_follows_safety() -> None:
    assert urgency_of(CustodyStatus.RELEASED) is Urgency.URGENT
    assert urgency_of(CustodyStatus.ESCAPED) is Urgency.URGENT
    assert urgency_of(CustodyStatus.IN_CUSTODY) is Urgency.INFORMATIONAL
    assert urgency_of(CustodyStatus.COURT_DATE_SET) is Urgency.INFORMATIONAL


def test_identifiers_compare_without_case_or_spaces() -> None:
    assert normalise_identifier(" cr 2026-001 ") == "CR2026-001"
