"""The 4-digit PIN a victim chooses for voice calls: entered on the keypad to confirm they heard an urgent notice.

Stored only as a keyed hash bound to the subscription (10,000 PINs are trivial to try against a bare hash). Guessable
PINs are refused: the same digit four times, a run up or down (1234, 9876), two repeated pairs (1212, 1122), and
the years people pick first (19xx, 20xx).
"""

from __future__ import annotations

import hashlib
import hmac
from itertools import pairwise

from services.subscription.domain.errors import InvalidRequestError

PIN_DIGITS = 4
PIN_HASH_CONTEXT = "voice-pin"


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
        raise InvalidRequestError(problem)
    return digits


def hash_pin(key: str, subscription_id: str, pin: str) -> str:
    """Keyed and bound to the subscription: the same PIN of two victims hashes differently."""
    message = f"{PIN_HASH_CONTEXT}:{subscription_id}:{pin}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def pin_matches(key: str, subscription_id: str, entered: str, pin_hash: str) -> bool:
    """Constant-time comparison of what was keyed in with the stored hash."""
    return hmac.compare_digest(hash_pin(key, subscription_id, entered), pin_hash)
