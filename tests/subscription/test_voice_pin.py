"""The voice PIN: four digits that are hard to guess, stored only as a keyed hash bound to the subscription."""

from __future__ import annotations

import pytest

from services.subscription.domain.errors import InvalidRequestError
from services.subscription.domain.pin import clean_pin, hash_pin, pin_matches, pin_problem

KEY = "blind-index-key-for-tests-only-0123456789"


@pytest.mark.parametrize(
    ("pin", "reason"),
    [
        ("0000", "same digit"),
        ("7777", "same digit"),
        ("1234", "in a row"),
        ("6789", "in a row"),
        ("9876", "in a row"),
        ("8901", "in a row"),
        ("1212", "repeated pair"),
        ("1122", "repeated pair"),
        ("1985", "year"),
        ("2024", "year"),
        ("482", "4 digits"),
        ("48210", "4 digits"),
        ("48a1", "4 digits"),
        ("４８２１", "4 digits"),  # full-width digits are not what a keypad sends
        ("", "4 digits"),
    ],
)
def test_trivial_or_malformed_pins_are_refused_with_a_reason(pin: str, reason: str) -> None:
    problem = pin_problem(pin)
    assert problem is not None
    assert reason in problem
    with pytest.raises(InvalidRequestError, match=reason):
        clean_pin(pin)


@pytest.mark.parametrize(("typed", "pin"), [("4821", "4821"), ("48 21", "4821"), ("48-21", "4821"), ("0597", "0597")])
def test_a_hard_pin_is_accepted_as_people_type_it(typed: str, pin: str) -> None:
    assert pin_problem(pin) is None
    assert clean_pin(typed) == pin


def test_the_hash_is_keyed_bound_to_the_subscription_and_checked_in_constant_time() -> None:
    stored = hash_pin(KEY, "sub-1", "4821")
    assert "4821" not in stored
    assert stored != hash_pin(KEY, "sub-2", "4821")
    assert stored != hash_pin("another-key-entirely-0123456789abcdef", "sub-1", "4821")
    assert pin_matches(KEY, "sub-1", "4821", stored)
    assert not pin_matches(KEY, "sub-1", "4812", stored)
    assert not pin_matches(KEY, "sub-2", "4821", stored)
