"""Which custody change is the subject's newest: late, older changes are recorded but notify nobody."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.matching import domain
from services.matching.domain import ChangePosition, Freshness
from shared.events import CustodyStatusChanged
from shared.vocabulary import CustodyStatus
from tests.matching.factories import BASE_TIME, change

STATUSES = list(CustodyStatus)


def a_change(minute: int, sequence: int | None, received_second: int, status: CustodyStatus) -> CustodyStatusChanged:
    return change(status=status).model_copy(
        update={
            "effective_at": BASE_TIME + timedelta(minutes=minute),
            "sequence": sequence,
            "received_at": BASE_TIME + timedelta(hours=1, seconds=received_second),
        }
    )


# Few distinct instants, sequences and receipt times, so ties on the first keys are common.
histories = st.lists(
    st.tuples(st.integers(0, 3), st.none() | st.integers(0, 2), st.integers(0, 2), st.sampled_from(STATUSES)).map(
        lambda fields: a_change(*fields)
    ),
    min_size=1,
    max_size=8,
).map(lambda changes: [(f"event-{n}", c) for n, c in enumerate(changes)])


def deliver(order: list[tuple[str, CustodyStatusChanged]]) -> tuple[list[str], ChangePosition | None]:
    """What matching does with one subject's changes in this delivery order: those that notify, the final state."""
    newest: ChangePosition | None = None
    notified = []
    for event_id, custody in order:
        position = domain.change_position(event_id, custody)
        if domain.freshness(newest, position) is Freshness.NEWEST:
            notified.append(event_id)
            newest = position
    return notified, newest


@given(st.data(), histories)
def test_in_any_delivery_order_only_a_change_newer_than_all_before_it_notifies(
    data: st.DataObject, history: list[tuple[str, CustodyStatusChanged]]
) -> None:
    # Any order, with redeliveries (a retry topic, a replay, an agency resend).
    order = data.draw(st.lists(st.sampled_from(history), min_size=len(history)).flatmap(st.permutations))
    order += data.draw(st.permutations(history))  # every change arrives at least once
    positions = [domain.change_position(event_id, custody) for event_id, custody in order]

    notified, final = deliver(order)

    newer_than_all_before = [n for n in range(len(order)) if all(positions[n] > p for p in positions[:n])]
    assert notified == [order[n][0] for n in newer_than_all_before]
    assert len(set(notified)) == len(notified), "a redelivered change never notifies twice"
    assert final == max(positions), "the final state is the newest change, whatever the order"
    effective = [custody.effective_at for _, custody in order]
    for n in newer_than_all_before:
        assert all(effective[n] >= before for before in effective[:n]), "an older change never notifies"


@given(histories)
def test_in_the_agencys_own_order_every_change_notifies(history: list[tuple[str, CustodyStatusChanged]]) -> None:
    in_order = sorted(history, key=lambda item: domain.change_position(*item))
    notified, _ = deliver(in_order)
    assert notified == [event_id for event_id, _ in in_order]


def test_released_arriving_after_a_newer_in_custody_is_stale() -> None:
    released = domain.change_position("released", a_change(1, None, 0, CustodyStatus.RELEASED))
    booked_again = domain.change_position("booked", a_change(2, None, 0, CustodyStatus.IN_CUSTODY))
    assert domain.freshness(None, released) is Freshness.NEWEST
    assert domain.freshness(released, booked_again) is Freshness.NEWEST
    assert domain.freshness(booked_again, released) is Freshness.STALE


def test_ties_at_one_instant_go_to_the_higher_sequence_then_the_later_feed() -> None:
    first = domain.change_position("first", a_change(0, 1, 5, CustodyStatus.IN_CUSTODY))
    later_sequence = domain.change_position("later-sequence", a_change(0, 2, 0, CustodyStatus.RELEASED))
    assert domain.freshness(later_sequence, first) is Freshness.STALE
    assert domain.freshness(first, later_sequence) is Freshness.NEWEST

    without_sequence = domain.change_position("none", a_change(0, None, 9, CustodyStatus.RELEASED))
    assert domain.freshness(first, without_sequence) is Freshness.STALE, "a missing sequence sorts first"

    resent = domain.change_position("resent", a_change(0, 1, 6, CustodyStatus.RELEASED))
    assert domain.freshness(first, resent) is Freshness.NEWEST, "a later feed about the same instant corrects it"
    assert domain.freshness(resent, first) is Freshness.STALE


def test_the_same_event_again_is_a_redelivery_not_a_change() -> None:
    position = domain.change_position("e-1", a_change(0, None, 0, CustodyStatus.RELEASED))
    assert domain.freshness(position, position) is Freshness.REDELIVERED
