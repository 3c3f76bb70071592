"""contracts/ is generated from the code; this fails when someone changed one without the other."""

from pathlib import Path

import jsonschema

from shared.contracts import differences, event_schemas
from shared.events import EVENT_TYPES

CONTRACTS = Path(__file__).resolve().parents[1] / "contracts"


def test_checked_in_contracts_match_the_code() -> None:
    problems = differences(CONTRACTS)
    assert not problems, "run `make contracts`:\n" + "\n".join(problems)


def test_every_event_schema_is_valid_json_schema() -> None:
    schemas = event_schemas()
    assert set(schemas) == set(EVENT_TYPES)
    for schema in schemas.values():
        jsonschema.Draft202012Validator.check_schema(schema)
