"""Unit tests of how a call reads on the dashboard: its progress in Twilio's words, who answered, the PIN."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.ops.deliveries.domain import (
    DeliveryAttempt,
    DeliveryNotice,
    StatusEvent,
    acknowledgement,
    answered_by,
    call_status,
)
from services.ops.deliveries.flows import history_entries
from tests.ops.standins import DeliveryStandIn, call_attempt

PLACED = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)


def event(status: str, attempt: int, minutes: float, error_code: str | None = None) -> StatusEvent:
    return StatusEvent(
        event_id=f"e-{status}-{attempt}",
        status=status,
        provider="twilio-voice",
        error_code=error_code,
        attempt=attempt,
        at=PLACED + timedelta(minutes=minutes),
        latency_seconds=None,
    )


def notice(*attempts: dict[str, object], acknowledged_at: datetime | None = None) -> DeliveryNotice:
    delivery = DeliveryStandIn()
    delivery.add_notice(
        "n-call", channel="voice", attempts=list(attempts), acknowledged_at=acknowledged_at, status="delivered"
    )
    return DeliveryNotice.model_validate(delivery.notices["n-call"])


def test_a_calls_progress_reads_in_twilios_words_and_sms_has_none() -> None:
    assert [
        call_status("voice", status, code)
        for status, code in [
            ("created", None),
            ("sending", None),
            ("sent", None),
            ("delivered", None),
            ("temporary-failure", "busy"),
            ("temporary-failure", "no-answer"),
            ("temporary-failure", "failed"),
            ("technical-failure", "canceled"),
        ]
    ] == [None, "queued or ringing", "in progress", "completed", "busy", "no-answer", "failed", "canceled"]
    assert call_status("sms", "delivered", None) is None
    assert call_status("email", "temporary-failure", "busy") is None


def test_who_answered_comes_from_delivery_s_note_on_the_attempt() -> None:
    def attempt(detail: str | None, channel: str = "voice") -> DeliveryAttempt:
        return DeliveryAttempt(number=1, channel=channel, status="delivered", detail=detail)

    assert answered_by(attempt("answered by machine_start")) == "machine_start"
    assert answered_by(attempt("answered by human")) == "human"
    assert answered_by(attempt(None)) is None
    assert answered_by(attempt("provider timed out")) is None
    assert answered_by(attempt("answered by human", channel="sms")) is None
    assert answered_by(attempt("answered by +15125550123")) == "[phone redacted]"  # never a number, whatever arrives


def test_an_acknowledgement_during_a_call_was_the_pin_on_that_call() -> None:
    machine = call_attempt(1, "delivered", at=PLACED, answered_by="machine_start")
    person = call_attempt(2, "delivered", at=PLACED + timedelta(hours=2), answered_by="human", minutes=2)
    during = acknowledgement(notice(machine, person, acknowledged_at=PLACED + timedelta(hours=2, minutes=1)))
    assert during is not None
    assert during.how == "PIN on call attempt 2"
    between = acknowledgement(notice(machine, person, acknowledged_at=PLACED + timedelta(minutes=30)))
    assert between is not None
    assert (between.at, between.how) == (PLACED + timedelta(minutes=30), None)  # a reply or a link, not the PIN
    assert acknowledgement(notice(machine, person)) is None


def test_each_attempts_last_line_says_who_answered() -> None:
    events = [
        event("sending", 1, 0),
        event("sent", 1, 0.5),
        event("delivered", 1, 1),
        event("temporary-failure", 2, 120, "busy"),
        event("sending", 3, 150),
        event("delivered", 3, 152),
    ]
    attempts = [
        DeliveryAttempt.model_validate(call_attempt(1, "delivered", at=PLACED, answered_by="machine_start")),
        DeliveryAttempt.model_validate(call_attempt(2, "temporary-failure", at=PLACED, error_code="busy")),
        DeliveryAttempt.model_validate(call_attempt(3, "delivered", at=PLACED, answered_by="human")),
    ]
    lines = history_entries("voice", events, attempts)
    assert [(line.attempt, line.call_status, line.answered_by) for line in lines] == [
        (1, "queued or ringing", None),
        (1, "in progress", None),
        (1, "completed", "machine_start"),
        (2, "busy", None),
        (3, "queued or ringing", None),
        (3, "completed", "human"),
    ]
    assert [line.call_status for line in history_entries("sms", events[:3], [])] == [None, None, None]


def test_the_stand_ins_calls_keep_to_deliverys_own_schema() -> None:
    from services.delivery.schemas import NotificationView

    busy = call_attempt(1, "temporary-failure", at=PLACED, error_code="busy")
    person = call_attempt(2, "delivered", at=PLACED + timedelta(hours=2), answered_by="human")
    delivery = DeliveryStandIn()
    delivery.add_notice("n-call", channel="voice", attempts=[busy, person], acknowledged_at=PLACED, status="delivered")
    answer = delivery.notices["n-call"]
    view = NotificationView.model_validate(answer)
    assert DeliveryNotice.model_validate(view.model_dump(mode="json")) == DeliveryNotice.model_validate(answer)
