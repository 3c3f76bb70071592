"""contracts/ is generated from the code; this fails when someone changed one without the other."""

import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema

from shared.contracts import differences, event_schemas
from shared.envelope import encode, new_event
from shared.events import EVENT_TYPES, CustodyStatusChanged, SubjectIdentifier
from shared.vocabulary import CustodyStatus, IdentifierKind

CONTRACTS = Path(__file__).resolve().parents[1] / "contracts"


def test_checked_in_contracts_match_the_code() -> None:
    problems = differences(CONTRACTS)
    assert not problems, "run `make contracts`:\n" + "\n".join(problems)


def test_every_event_schema_is_valid_json_schema() -> None:
    schemas = event_schemas()
    assert set(schemas) == set(EVENT_TYPES)
    for schema in schemas.values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_an_encoded_event_validates_against_its_published_schema() -> None:
    event = new_event(
        CustodyStatusChanged(
            agency_id="a",
            subject_id="s",
            identifiers=[SubjectIdentifier(kind=IdentifierKind.BOOKING_NUMBER, value="B-1")],
            status=CustodyStatus.ESCAPED,
            effective_at=datetime(2026, 1, 1, tzinfo=UTC),
            agency_record_id="r",
            feed_batch_id="b",
            received_at=datetime(2026, 1, 1, tzinfo=UTC),
        ),
        source="/custody-watch/ingest",
    )
    schema = event_schemas()[event.type]
    jsonschema.validate(json.loads(encode(event)), schema)
    broken = json.loads(encode(event))
    broken["data"]["status"] = "vanished"
    try:
        jsonschema.validate(broken, schema)
    except jsonschema.ValidationError:
        return
    raise AssertionError("an unknown status must not validate")
