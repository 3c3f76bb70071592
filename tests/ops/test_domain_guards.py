"""Unit tests of the safety-guard logic of the ops dashboard: storm holds, overrides, blocks. No servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from services.delivery.settings import DEV_OPERATOR_TOKEN
from services.ops.audit.domain import DecisionRefusedError, decision_reason
from services.ops.clients.base import AnswerFormatError, explain_refusal, parse_items
from services.ops.deliveries.domain import StoppedNotice, block_outcome
from services.ops.overrides.domain import (
    Override,
    OverrideInput,
    OverrideRefusedError,
    effective_time,
    override_message,
    override_request,
    parse_utc_offset,
)
from services.ops.settings import DEV_DELIVERY_OPERATOR_TOKEN, OpsSettings
from services.ops.storms.domain import HoldState, StormHold, split_holds
from shared.vocabulary import CustodyStatus, IdentifierKind
from tests.kafkautil import PRODUCTION_KAFKA

NOW = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)


def hold(hold_id: str, state: str = "holding", *, opened_minutes_ago: int = 5, **changes: Any) -> StormHold:
    document: dict[str, Any] = {
        "hold_id": hold_id,
        "agency_id": "county-jail",
        "state": state,
        "opened_at": (NOW - timedelta(minutes=opened_minutes_ago)).isoformat(),
        "trigger": "412 releases in 10 minutes (usually 3)",
        "held_changes": 415,
        "urgent_changes": 412,
        "by_status": {"released": 412, "in_custody": 3},
        "samples": [
            {
                "agency_record_id": "r-1",
                "status": "released",
                "previous_status": "in_custody",
                "effective_at": NOW.isoformat(),
                "facility": None,
                "display_name": "DOE, JOHN",
            }
        ],
        "decided_at": None,
        "decided_by": None,
        "decision_reason": None,
        "some_future_field": 1,
    }
    return StormHold.model_validate(document | changes)


def test_a_storm_hold_is_read_as_ingest_documents_it() -> None:
    held = hold("h-1")
    assert held.state is HoldState.HOLDING
    assert held.samples[0].display_name == "DOE, JOHN"
    assert held.by_status == {"released": 412, "in_custody": 3}
    with pytest.raises(AnswerFormatError, match=r"storm hold #1: state"):
        parse_items(
            StormHold, [held.model_dump(mode="json"), held.model_dump(mode="json") | {"state": "?"}], "storm hold"
        )
    with pytest.raises(AnswerFormatError, match="expected a list"):
        parse_items(StormHold, {"holds": []}, "storm hold")


def test_open_holds_oldest_first_and_the_newest_decisions_first() -> None:
    old, new = hold("old", opened_minutes_ago=30), hold("new", opened_minutes_ago=1)
    released = hold("rel", "released", opened_minutes_ago=90, decided_at=(NOW - timedelta(minutes=60)).isoformat())
    discarded = hold("dis", "discarded", opened_minutes_ago=80, decided_at=(NOW - timedelta(minutes=10)).isoformat())
    opened_since = hold("since", opened_minutes_ago=0)
    holding, decided = split_holds([new, old], [opened_since, new, discarded, old, released], decided_shown=10)
    assert [h.hold_id for h in holding] == ["old", "new", "since"]
    assert [h.hold_id for h in decided] == ["dis", "rel"]
    assert split_holds([], [discarded, released], decided_shown=1)[1] == [discarded]
    assert split_holds([old], [], decided_shown=5) == ([old], [])  # beyond the newest 100: still shown open
    decided_meanwhile = hold("old", "released", opened_minutes_ago=30, decided_at=NOW.isoformat())
    assert split_holds([old], [decided_meanwhile], decided_shown=5) == ([], [decided_meanwhile])


def test_decisions_and_blocks_need_a_reason() -> None:
    assert decision_reason("  vendor test batch  ", what="discarding") == "vendor test batch"
    with pytest.raises(DecisionRefusedError, match="give a reason for discarding"):
        decision_reason("   ", what="discarding")
    with pytest.raises(DecisionRefusedError, match="501 characters; at most 500"):
        decision_reason("x" * 501, what="discarding")


def test_refusals_of_other_services_in_plain_words() -> None:
    body = {
        "detail": [
            {"loc": ["body", "effective_at"], "msg": "Input should have timezone info", "type": "x"},
            {"loc": ["body"], "msg": "Value error, give at least one identifier", "type": "value_error"},
            {"loc": ["body", "transfer_destination"], "msg": "String too long", "type": "x"},
        ]
    }
    assert explain_refusal(422, body) == (
        "effective time: Input should have timezone info; give at least one identifier;"
        " transfer destination: String too long"
    )
    assert explain_refusal(409, {"detail": "storm hold h-1 was already released"}) == (
        "storm hold h-1 was already released"
    )
    assert explain_refusal(500, None) == "answered HTTP 500"
    assert explain_refusal(502, {"detail": ""}) == "answered HTTP 502"


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("+05:30", 330), ("-06:00", -360), ("-0600", -360), ("-6", -360), ("Z", 0), ("utc", 0), ("+14:00", 840)],
)
def test_utc_offsets(text: str, minutes: int) -> None:
    assert parse_utc_offset(text).utcoffset(None) == timedelta(minutes=minutes)


@pytest.mark.parametrize("text", ["6", "+15:00", "+05:60", "CST", "+5:3", ""])
def test_bad_utc_offsets_are_refused(text: str) -> None:
    with pytest.raises(OverrideRefusedError):
        parse_utc_offset(text)


def test_effective_time_in_the_agencys_zone_an_explicit_offset_or_as_typed() -> None:
    chicago = "America/Chicago"
    in_zone = effective_time("2026-11-27T09:30", zone_name=chicago, offset_text="", now=NOW)
    assert in_zone == datetime(2026, 11, 27, 15, 30, tzinfo=UTC)
    explicit = effective_time("2026-11-27T09:30", zone_name=chicago, offset_text="+01:00", now=NOW)
    assert explicit == datetime(2026, 11, 27, 8, 30, tzinfo=UTC)
    typed = effective_time("2026-11-27T09:30:00-05:00", zone_name=chicago, offset_text="+01:00", now=NOW)
    assert typed == datetime(2026, 11, 27, 14, 30, tzinfo=UTC)
    summer = effective_time("2026-07-01T12:00", zone_name=chicago, offset_text="", now=NOW)
    assert summer.utcoffset() == timedelta(hours=-5)


def test_clock_changes_and_future_times_are_refused() -> None:
    chicago = "America/Chicago"
    with pytest.raises(OverrideRefusedError, match="happens twice or never"):
        effective_time("2026-11-01T01:30", zone_name=chicago, offset_text="", now=NOW)  # fall back: twice
    with pytest.raises(OverrideRefusedError, match="happens twice or never"):
        effective_time("2026-03-08T02:30", zone_name=chicago, offset_text="", now=NOW)  # spring forward: never
    assert (
        effective_time("2026-11-01T01:30", zone_name=chicago, offset_text="-06:00", now=NOW).astimezone(UTC).hour == 7
    )
    with pytest.raises(OverrideRefusedError, match="in the future"):
        effective_time("2026-11-27T12:10", zone_name=chicago, offset_text="", now=NOW)
    assert effective_time("2026-11-27T12:04", zone_name=chicago, offset_text="", now=NOW)  # clock skew tolerated
    with pytest.raises(OverrideRefusedError, match="give the effective time"):
        effective_time(" ", zone_name=chicago, offset_text="", now=NOW)
    with pytest.raises(OverrideRefusedError, match="not a date and time"):
        effective_time("yesterday", zone_name=chicago, offset_text="", now=NOW)


def entered(**changes: Any) -> OverrideInput:
    values: dict[str, Any] = {
        "agency_id": "county-jail",
        "identifier_kind": "booking_number",
        "identifier": " B-42 ",
        "status": "released",
        "effective_local": "2026-11-27T09:30",
        "utc_offset": "",
        "release_reason": "bond",
        "reason": " feed down; jail confirmed by phone ",
    }
    return OverrideInput.model_validate(values | changes)


def test_override_request_matches_the_ingest_contract() -> None:
    body = override_request(entered(), operator="alice", zone_name="America/Chicago", now=NOW)
    assert body == {
        "person_number": None,
        "booking_number": "B-42",
        "case_numbers": [],
        "status": "released",
        "effective_at": "2026-11-27T09:30:00-06:00",
        "release_reason": "bond",
        "transfer_destination": None,
        "facility": None,
        "name": None,
        "operator": "alice",
        "reason": "feed down; jail confirmed by phone",
    }
    by_case = override_request(
        entered(
            identifier_kind="case_number",
            status="transferred",
            release_reason=None,
            transfer_destination="State Prison",
            facility="Main",
        ),
        operator="alice",
        zone_name="UTC",
        now=NOW,
    )
    assert (by_case["case_numbers"], by_case["booking_number"], by_case["person_number"]) == (["B-42"], None, None)
    assert (by_case["transfer_destination"], by_case["facility"]) == ("State Prison", "Main")
    by_person = override_request(
        entered(identifier_kind="person_number", release_reason=None), operator="a", zone_name="UTC", now=NOW
    )
    assert by_person["person_number"] == "B-42"
    assert "court_date" not in by_person


def test_a_court_date_is_sent_only_with_its_status_and_may_lie_ahead() -> None:
    body = override_request(
        entered(status="court_date_set", release_reason=None, court_date_local="2027-01-15T09:00"),
        operator="alice",
        zone_name="America/Chicago",
        now=NOW,
    )
    assert (body["status"], body["court_date"]) == ("court_date_set", "2027-01-15T09:00:00-06:00")


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"identifier": "  "}, "give the booking, person or case number"),
        ({"reason": ""}, "give the reason"),
        ({"status": "escaped"}, "release reason goes only with the status 'released'"),
        ({"court_date_local": "2026-12-01T09:00", "release_reason": None}, "court date goes only with the status"),
        ({"status": "court_date_set", "release_reason": None}, "give the court date"),
    ],
)
def test_incomplete_or_inconsistent_overrides_are_refused(changes: dict[str, Any], problem: str) -> None:
    with pytest.raises(OverrideRefusedError, match=problem):
        override_request(entered(**changes), operator="alice", zone_name="UTC", now=NOW)


def test_override_form_values_are_checked() -> None:
    with pytest.raises(ValidationError, match="identifier_kind"):
        entered(identifier_kind="ssn")
    with pytest.raises(ValidationError, match="status"):
        entered(status="vanished")
    assert entered(status="returned_to_custody", release_reason=None).status is CustodyStatus.RETURNED_TO_CUSTODY
    assert entered().identifier_kind is IdentifierKind.BOOKING_NUMBER


def override(result: str) -> Override:
    return Override.model_validate(
        {
            "override_id": "o-1",
            "agency_id": "county-jail",
            "subject_id": "s-1",
            "result": result,
            "event_id": "e-1" if result == "accepted" else None,
            "status": "released",
            "effective_at": datetime(2026, 11, 27, 9, 30, tzinfo=timezone(timedelta(hours=-6))).isoformat(),
            "operator": "alice",
            "reason": "feed down",
            "created_at": NOW.isoformat(),
        }
    )


def test_override_outcomes_in_plain_words() -> None:
    assert "accepted: notices go out" in override_message(override("accepted"))
    assert "duplicate: the subject already has this status; no notice" in override_message(override("duplicate"))
    assert "stale: older than the subject's newest record; no notice" in override_message(override("stale"))
    assert "sealed" in override_message(override("sealed"))
    with pytest.raises(ValidationError):
        override("maybe")


def test_block_outcome_follows_deliverys_answer() -> None:
    blocked, message = block_outcome(StoppedNotice(notification_id="n-1", status="created", outcome="stopped"))
    assert blocked
    assert message == "Blocked notice n-1: no further attempts."
    blocked, message = block_outcome(StoppedNotice(notification_id="n-1", status="sent", outcome="stopped"))
    assert blocked
    assert "cannot be recalled" in message
    blocked, message = block_outcome(StoppedNotice(notification_id="n-1", status="delivered", outcome="delivered"))
    assert not blocked
    assert message == "Not blocked: notice n-1 had already ended (delivered)."


def test_delivery_token_default_is_deliverys_and_refused_in_production() -> None:
    assert DEV_DELIVERY_OPERATOR_TOKEN == DEV_OPERATOR_TOKEN
    production: dict[str, Any] = {
        "environment": "production",
        "database_url": "postgresql://ops@db/ops",
        "session_secret": "Hq7-Zw2LmXc9RtVb4NpKs8YdFg3JeUa6",
        "ingest_admin_token": "Lp4-Tn8QwEr2YuIo6AsDf9GhJk3ZxCvB",
        "matching_operator_token": "Mx5-Bv9NcQw3ErTy7UiOp2AsDf6GhJkL",
        "kafka": PRODUCTION_KAFKA,
        "bootstrap_admin_username": None,
        "bootstrap_admin_password": None,
        "secure_cookies": True,
    }
    with pytest.raises(ValidationError, match="OPS_DELIVERY_OPERATOR_TOKEN"):
        OpsSettings(**production)
    settings = OpsSettings(**production, delivery_operator_token="real-delivery-operator-token")
    assert settings.delivery_url == "http://127.0.0.1:8004"
    with pytest.raises(ValidationError, match="delivery_operator_token"):
        OpsSettings(environment="test", delivery_operator_token="short")


def test_requests_and_stand_ins_keep_to_ingests_and_deliverys_own_schemas() -> None:
    """What ops sends validates against ingest's request models, and the stand-ins answer in the real shapes."""
    from services.delivery.schemas import NotificationView
    from services.ingest.overrides.schemas import OverrideCreate, OverrideOut
    from services.ingest.storm_holds.schemas import HoldDiscard, HoldRelease, StormHoldOut
    from tests.ops.standins import DeliveryStandIn, IngestStandIn, storm_hold

    now = datetime.now(UTC)
    for changes in (
        {},
        {
            "identifier_kind": "case_number",
            "status": "transferred",
            "release_reason": None,
            "transfer_destination": "X",
        },
        {"status": "court_date_set", "release_reason": None, "court_date_local": "2030-01-15T09:00"},
    ):
        typed = entered(**changes | {"effective_local": f"{now - timedelta(hours=1):%Y-%m-%dT%H:%M}"})
        OverrideCreate.model_validate(override_request(typed, operator="alice", zone_name="UTC", now=now))
    HoldRelease.model_validate({"operator": "alice"})
    HoldDiscard.model_validate({"operator": "alice", "reason": decision_reason(" wrong batch ", what="discarding")})

    hold_document = storm_hold("h-1", "county-jail")
    assert StormHold.model_validate(StormHoldOut.model_validate(hold_document).model_dump(mode="json")) == (
        StormHold.model_validate(hold_document)
    )
    ingest = IngestStandIn()
    ingest.add_agency("county-jail")
    body = override_request(entered(), operator="alice", zone_name="America/Chicago", now=NOW)
    answer = ingest.override("county-jail", body)
    OverrideOut.model_validate(answer.json())
    delivery = DeliveryStandIn()
    delivery.add_notice("n-1")
    view = NotificationView.model_validate(delivery.notices["n-1"])
    assert StoppedNotice.model_validate(view.model_dump(mode="json")).outcome is None
