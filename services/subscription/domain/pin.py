"""The 4-digit PIN a victim chooses for voice calls: entered on the keypad to confirm they heard an urgent notice.

Stored only as a keyed hash bound to the subscription (:mod:`shared.pin`, which delivery checks calls with). Guessable
PINs are refused: the same digit four times, a run up or down (1234, 9876), two repeated pairs (1212, 1122), and
the years people pick first (19xx, 20xx).
"""

from __future__ import annotations

from itertools import pairwise

from services.subscription.domain.errors import InvalidRequestError, ProblemCode
from shared.pin import hash_pin, pin_matches

__all__ = ["PIN_DIGITS", "clean_pin", "hash_pin", "pin_matches", "pin_problem"]

PIN_DIGITS = 4


def _is_run(digits: str) -> bool:
    steps = {(int(b) - int(a)) % 10 for a, b in pairwise(digits)}
    return steps in ({1}, {9})


def pin_problem(pin: str) -> str | None:
    """Why ``pin`` cannot be used, in words for the person choosing it; None when it is fine."""
    if len(pin) != PIN_DIGITS or not pin.isascii() or not pin.isdigit():
        return f"the PIN has {PIN_DIGITS} digits (0-9)"
    if len(set(pin)) == 1:
        return "the PIN cannot be the same digit four times; choose one that is hard to guess"
    if _is_run(pin):
        return "the PIN cannot be digits in a row like 1234 or 9876; choose one that is hard to guess"
    if pin[:2] == pin[2:] or (pin[0] == pin[1] and pin[2] == pin[3]):
        return "the PIN cannot be a repeated pair like 1212 or 1122; choose one that is hard to guess"
    if pin[:2] in ("19", "20"):
        return "the PIN cannot look like a year; choose one that is hard to guess"
    return None


def clean_pin(raw: str) -> str:
    """The PIN as typed ("48 21" is fine), or a 422 saying what is wrong with it."""
    digits = "".join(character for character in raw if character not in " -")
    problem = pin_problem(digits)
    if problem is not None:
        raise InvalidRequestError(problem, code=ProblemCode.INVALID_PIN)
    return digits
