"""Unit tests of ingest's pure logic: normalisation, change detection (with a hypothesis reference model)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.domain.changes import RecordResult, Snapshot, plan_batch
from services.ingest.domain.events import event_id_for
from services.ingest.domain.records import (
    DEFAULT_STATUS_MAP,
    CustodyRecord,
    Identifier,
    RecordRejectedError,
    StatusMapping,
    normalise_record,
    parse_csv_columns,
)
from services.ingest.feed_health.domain import feed_is_stale
from services.ingest.keys import domain as apikeys
from shared.vocabulary import CustodyStatus, IdentifierKind, ReleaseReason

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CHICAGO = ZoneInfo("America/Chicago")
SKEW = timedelta(minutes=5)


def normalise(raw: Any) -> CustodyRecord:
    return normalise_record(raw, status_map=DEFAULT_STATUS_MAP, timezone=CHICAGO, now=NOW, max_skew=SKEW)


def raw_record(**overrides: Any) -> dict[str, Any]:
    return {
        "record_id": "r-1",
        "person_number": "P-1",
        "booking_number": "B-1",
        "case_numbers": ["CR-1", "CR-2"],
        "name": "Jo Doe",
        "facility": "Main Jail",
        "status_code": "BOOKED",
        "effective_at": "2026-06-01T10:00:00Z",
    } | overrides


def rejection(raw: Any) -> str:
    with pytest.raises(RecordRejectedError) as caught:
        normalise(raw)
    return str(caught.value)


def test_a_valid_record_is_normalised_to_canonical_terms() -> None:
    record = normalise(raw_record(status_code="released_bond"))
    assert record.status is CustodyStatus.RELEASED
    assert record.release_reason is ReleaseReason.BOND
    assert record.effective_at == datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
    assert {i.kind for i in record.identifiers} == {
        IdentifierKind.PERSON_NUMBER,
        IdentifierKind.BOOKING_NUMBER,
        IdentifierKind.CASE_NUMBER,
    }
    assert len(record.identifiers) == 4


def test_a_time_without_offset_is_read_in_the_agency_time_zone() -> None:
    record = normalise(raw_record(effective_at="2026-06-01T05:00:00"))
    assert record.effective_at == datetime(2026, 6, 1, 10, 0, tzinfo=UTC)  # CDT is UTC-5


def test_an_unknown_status_code_is_rejected_not_guessed() -> None:
    assert "unknown status code 'GONE'" in rejection(raw_record(status_code="GONE"))


def test_impossible_dates_are_rejected() -> None:
    assert "in the future" in rejection(raw_record(effective_at="2026-06-01T12:06:00Z"))
    assert "before 1900" in rejection(raw_record(effective_at="1899-12-31T00:00:00Z"))
    normalise(raw_record(effective_at="2026-06-01T12:04:00Z"))  # within the skew


def test_a_date_of_birth_is_kept_when_real() -> None:
    assert normalise(raw_record(date_of_birth="1985-03-27")).date_of_birth == date(1985, 3, 27)
    assert normalise(raw_record()).date_of_birth is None
    assert "date_of_birth" in rejection(raw_record(date_of_birth="1985-02-30"))
    assert "before 1900 or in the future" in rejection(raw_record(date_of_birth="2026-06-02"))
    assert "before 1900 or in the future" in rejection(raw_record(date_of_birth="1899-12-31"))
    assert "date_of_birth" in parse_csv_columns({})


def test_wrong_types_and_missing_fields_name_the_field() -> None:
    assert "effective_at" in rejection(raw_record(effective_at="yesterday"))
    assert "sequence" in rejection(raw_record(sequence="first"))
    assert "record_id" in rejection({k: v for k, v in raw_record().items() if k != "record_id"})
    assert "JSON object" in rejection(["not", "an", "object"])


def test_a_record_needs_an_identifier() -> None:
    assert "no identifier" in rejection(raw_record(person_number=None, booking_number="", case_numbers=[]))


def test_court_date_set_needs_a_court_date() -> None:
    assert "court_date" in rejection(raw_record(status_code="COURT_DATE_SET"))
    record = normalise(raw_record(status_code="court_date_set", court_date="2026-07-01T09:00:00"))
    assert record.court_date == datetime(2026, 7, 1, 14, 0, tzinfo=UTC)


def test_a_release_without_a_mapped_reason_has_reason_other() -> None:
    assert normalise(raw_record(status_code="RELEASED")).release_reason is ReleaseReason.OTHER


def test_a_release_reason_only_belongs_to_released() -> None:
    with pytest.raises(ValueError, match="release_reason"):
        StatusMapping(status=CustodyStatus.ESCAPED, release_reason=ReleaseReason.BOND)


def test_csv_columns_are_completed_from_defaults_and_checked() -> None:
    columns = parse_csv_columns({"record_id": "TXN_ID"})
    assert columns["record_id"] == "TXN_ID"
    assert columns["status_code"] == "status_code"
    with pytest.raises(ValueError, match="unknown CSV fields"):
        parse_csv_columns({"shoe_size": "x"})
    with pytest.raises(ValueError, match="its own"):
        parse_csv_columns({"record_id": "status_code"})


def test_api_keys_carry_their_id_and_match_only_themselves() -> None:
    key = apikeys.generate_key()
    assert apikeys.key_id_of(key.token) == key.key_id
    assert apikeys.key_matches(key.token, key.key_hash)
    assert not apikeys.key_matches(key.token + "x", key.key_hash)
    assert apikeys.key_id_of("Bearer nonsense") is None
    assert key.token not in key.key_hash


def test_feed_staleness() -> None:
    created = NOW - timedelta(hours=5)
    assert feed_is_stale(None, created, 60, NOW)
    assert not feed_is_stale(NOW - timedelta(minutes=59), created, 60, NOW)
    assert feed_is_stale(NOW - timedelta(minutes=61), created, 60, NOW)


# --- planning batches -------------------------------------------------------------------------------------------


def empty_snapshot() -> Snapshot:
    return Snapshot(subjects={}, identifier_owner={}, known_record_ids=set())


def plan(records: list[Any], snapshot: Snapshot) -> list[RecordResult]:
    entries: list[tuple[int, CustodyRecord | RecordRejectedError]] = []
    for index, raw in enumerate(records):
        try:
            entries.append((index, normalise(raw)))
        except RecordRejectedError as rejected:
            entries.append((index, rejected))
    batch = plan_batch("county", entries, snapshot, batch_id="b-1", received_at=NOW)
    return [outcome.result for outcome in batch.outcomes]


def test_a_repeated_record_id_within_a_batch_is_rejected_and_an_earlier_one_is_a_duplicate() -> None:
    snapshot = empty_snapshot()
    first = raw_record(record_id="r-1")
    assert plan([first, raw_record(record_id="r-1", status_code="RELEASED")], snapshot) == [
        RecordResult.ACCEPTED,
        RecordResult.REJECTED,
    ]
    assert plan([first], snapshot) == [RecordResult.DUPLICATE]


def test_any_identifier_finds_the_subject_and_new_identifiers_join_it() -> None:
    snapshot = empty_snapshot()
    entries = [(0, normalise(raw_record(record_id="r-1", person_number=None, booking_number=None)))]
    first = plan_batch("county", entries, snapshot, batch_id="b", received_at=NOW)
    later = normalise(
        raw_record(
            record_id="r-2",
            person_number="p 1",
            booking_number=None,
            case_numbers=["cr-2"],
            status_code="RELEASED",
            effective_at="2026-06-01T11:00:00Z",
        )
    )
    second = plan_batch("county", [(0, later)], snapshot, batch_id="b2", received_at=NOW)
    assert second.outcomes[0].result is RecordResult.ACCEPTED
    assert second.outcomes[0].subject_id == first.outcomes[0].subject_id
    event = second.events[0]
    assert event.payload.previous_status is CustodyStatus.IN_CUSTODY
    assert {(i.kind, i.value) for i in event.payload.identifiers} == {
        (IdentifierKind.CASE_NUMBER, "CR-1"),
        (IdentifierKind.CASE_NUMBER, "CR-2"),
        (IdentifierKind.PERSON_NUMBER, "p 1"),
    }
    assert event.event_id == event_id_for("county", "r-2")
    assert event.key == f"county/{first.outcomes[0].subject_id}"


def test_identifiers_of_two_subjects_in_one_record_are_rejected() -> None:
    snapshot = empty_snapshot()
    only_person: dict[str, Any] = {"booking_number": None, "case_numbers": []}
    assert plan(
        [raw_record(record_id="a", person_number="P-A") | only_person, raw_record(record_id="b") | only_person],
        snapshot,
    ) == [RecordResult.ACCEPTED, RecordResult.ACCEPTED]
    both = raw_record(record_id="c", person_number="P-A", booking_number=None, case_numbers=[])
    both_identifiers = normalise(both)
    record = CustodyRecord(
        **{
            **both_identifiers.__dict__,
            "identifiers": (
                Identifier(IdentifierKind.PERSON_NUMBER, "P-A"),
                Identifier(IdentifierKind.PERSON_NUMBER, "P-1"),
            ),
        }
    )
    outcome = plan_batch("county", [(0, record)], snapshot, batch_id="b", received_at=NOW).outcomes[0]
    assert outcome.result is RecordResult.REJECTED
    assert "different subjects" in (outcome.reason or "")


def test_a_sealed_subject_gets_no_event() -> None:
    snapshot = empty_snapshot()
    plan([raw_record(record_id="r-1")], snapshot)
    next(iter(snapshot.subjects.values())).sealed = True
    entries = [(0, normalise(raw_record(record_id="r-2", status_code="RELEASED", effective_at="2026-06-01T11:00Z")))]
    batch = plan_batch("county", entries, snapshot, batch_id="b", received_at=NOW)
    assert [o.result for o in batch.outcomes] == [RecordResult.SEALED]
    assert batch.events == []


# --- property: change detection against a simple reference model ------------------------------------------------

STATUS_CODES = ["BOOKED", "RELEASED_BOND", "RELEASED_OR", "ESCAPED", "RETURNED_TO_CUSTODY", "REMOVED"]


@dataclass(frozen=True)
class Draw:
    record_id: str
    subject: int
    minute: int
    sequence: int | None
    status_code: str


draws = st.builds(
    Draw,
    record_id=st.sampled_from([f"r{n}" for n in range(12)]),
    subject=st.integers(0, 2),
    minute=st.integers(0, 5),
    sequence=st.one_of(st.none(), st.integers(0, 3)),
    status_code=st.sampled_from(STATUS_CODES),
)
batches = st.lists(st.lists(draws, min_size=1, max_size=6), min_size=1, max_size=6)


def reference_results(all_batches: list[list[Draw]]) -> list[RecordResult]:
    """The rules stated plainly over the whole history: a record is news only if it is (one of) the newest of its
    subject when it arrives and its status differs from the newest status before it."""
    history: dict[int, list[tuple[tuple[int, int], int, str]]] = {}
    ids_seen: set[str] = set()
    results: list[RecordResult] = []
    arrival = 0
    for batch in all_batches:
        ids_in_batch: set[str] = set()
        for draw in batch:
            arrival += 1
            if draw.record_id in ids_in_batch:
                results.append(RecordResult.REJECTED)
                continue
            ids_in_batch.add(draw.record_id)
            if draw.record_id in ids_seen:
                results.append(RecordResult.DUPLICATE)
                continue
            ids_seen.add(draw.record_id)
            meaning = DEFAULT_STATUS_MAP[draw.status_code]
            signature = f"{meaning.status}/{meaning.release_reason or 'other'}"
            position = (draw.minute, -1 if draw.sequence is None else draw.sequence)
            past = history.setdefault(draw.subject, [])
            newest_before = max(past, default=None, key=lambda item: (item[0], item[1]))
            past.append((position, arrival, signature))
            if newest_before is not None and position < newest_before[0]:
                results.append(RecordResult.STALE)
            elif newest_before is not None and newest_before[2] == signature:
                results.append(RecordResult.DUPLICATE)
            else:
                results.append(RecordResult.ACCEPTED)
    return results


@settings(max_examples=300, deadline=None)
@given(batches)
def test_change_detection_matches_the_reference_model(all_batches: list[list[Draw]]) -> None:
    snapshot = empty_snapshot()
    results: list[RecordResult] = []
    emitted: dict[str, list[tuple[datetime, int, str]]] = {}
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for number, batch in enumerate(all_batches):
        entries: list[tuple[int, CustodyRecord | RecordRejectedError]] = [
            (
                index,
                normalise(
                    {
                        "record_id": draw.record_id,
                        "person_number": f"P-{draw.subject}",
                        "status_code": draw.status_code,
                        "effective_at": (base + timedelta(minutes=draw.minute)).isoformat(),
                        "sequence": draw.sequence,
                    }
                ),
            )
            for index, draw in enumerate(batch)
        ]
        planned = plan_batch("county", entries, snapshot, batch_id=f"b{number}", received_at=NOW)
        results += [outcome.result for outcome in planned.outcomes]
        for event in planned.events:
            emitted.setdefault(event.key, []).append(
                (event.payload.effective_at, -1, f"{event.payload.status}/{event.payload.release_reason}")
            )
    # Records that never became a state are not mis-identified: subjects stay apart by identifier.
    assert results == reference_results(all_batches)
    for events in emitted.values():
        times = [when for when, _, _ in events]
        assert times == sorted(times), "events of one subject never go back in time"
        statuses = [status for _, _, status in events]
        assert all(a != b for a, b in pairwise(statuses)), "no event repeats a status"
