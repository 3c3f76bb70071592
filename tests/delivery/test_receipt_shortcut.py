"""A provider receipt that cannot change anything is answered without a write transaction."""

from __future__ import annotations

from datetime import UTC, datetime

from services.delivery.routes.callbacks import already_known
from services.delivery.store.attempts import AttemptRow
from shared.events import DeliveryStatus
from shared.vocabulary import Channel

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
SENT = AttemptRow(
    attempt_id="n-1.a1",
    notification_id="n-1",
    number=1,
    purpose="first",
    channel=Channel.SMS,
    contact_masked="+1 *** *** 0042",
    provider="local",
    provider_message_id="SM123",
    status=DeliveryStatus.SENT,
    error_code=None,
    detail=None,
    created_at=NOW,
    handed_off_at=NOW,
    completed_at=None,
    updated_at=NOW,
    calling_at=NOW,
    body_fingerprint=None,
    email_message_id=None,
)


def test_a_repeated_or_late_receipt_after_the_recorded_hand_off_is_known() -> None:
    assert already_known(SENT, DeliveryStatus.SENT)
    assert already_known(SENT, DeliveryStatus.SENDING)
    delivered = SENT.model_copy(update={"status": DeliveryStatus.DELIVERED})
    assert already_known(delivered, DeliveryStatus.SENT), "a late 'sent' after 'delivered'"


def test_a_receipt_that_moves_the_attempt_forward_is_applied() -> None:
    assert not already_known(SENT, DeliveryStatus.DELIVERED)
    assert not already_known(SENT, DeliveryStatus.TEMPORARY_FAILURE)


def test_a_receipt_that_beats_our_own_hand_off_bookkeeping_is_applied() -> None:
    in_flight = SENT.model_copy(
        update={"status": DeliveryStatus.SENDING, "handed_off_at": None, "provider_message_id": None}
    )
    assert not already_known(in_flight, DeliveryStatus.SENT)
    assert not already_known(SENT.model_copy(update={"handed_off_at": None}), DeliveryStatus.SENT)
    assert not already_known(SENT.model_copy(update={"provider_message_id": None}), DeliveryStatus.SENT)
