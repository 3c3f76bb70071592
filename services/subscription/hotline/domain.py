"""The hotline's menu as a pure state machine: which step a call is at, what the keys pressed there mean, and what
is said and asked next. No I/O: flows.py looks agencies and cases up and registers; twiml.py turns a
:class:`Reply` into TwiML.

| Step          | Asks for                               | Keys                                                     |
|---------------|----------------------------------------|----------------------------------------------------------|
| language      | the language                           | 1 English, 2 español                                     |
| agency        | the agency's 5-digit hotline number, # | the number; 0 # hears the agencies and numbers; * back   |
| pick-agency   | one of agencies sharing that number    | 1-8; * back                                              |
| case          | the case or booking number, #          | its digits; * back                                       |
| menu          | what next, after the status            | 1 register for calls, 2 contacts and help, 0 victim      |
|               |                                        | services (Dial), 8 stop calls about the case, 9 another  |
|               |                                        | case                                                     |
| pin           | a 4-digit PIN                          | the PIN; * back to the menu                              |
| pin-again     | the same PIN                           | the PIN; * back to the first PIN                         |
| stop-pin      | the PIN of the registration to stop    | the PIN; * back to the menu                              |

Nothing pressed: the question is asked once more, then the call says goodbye. A wrong key says so and asks again,
three times at most. A PIN that stops calls and is wrong is asked for again the same way, and a number that gets no
calls about the case hears exactly that too (the line never tells who is registered). Between steps the state
travels in the signed query string of each ``action`` URL.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.subscription.domain.pin import PIN_DIGITS, pin_problem
from shared.vocabulary import Language

AGENCY_CODE_DIGITS = 5
MAX_CASE_DIGITS = 20
MAX_WRONG = 3
MAX_PICK = 8
MAX_LISTED = 30
"""The agencies read out at most (by name): a longer list is more than a caller can follow."""
LIST_AGENCIES = "0"
BACK = "*"
VOICES: Mapping[Language, tuple[str, str]] = {
    Language.ENGLISH: ("Polly.Joanna", "en-US"),
    Language.SPANISH: ("Polly.Mia", "es-MX"),
}
"""The ``<Say>`` voice and language of each caller language (as delivery's calls speak)."""


class Step(StrEnum):
    LANGUAGE = "language"
    AGENCY = "agency"
    PICK_AGENCY = "pick-agency"
    CASE = "case"
    MENU = "menu"
    PIN = "pin"
    PIN_AGAIN = "pin-again"
    STOP_PIN = "stop-pin"


class MenuChoice(StrEnum):
    REGISTER = "1"
    RESOURCES = "2"
    CONNECT = "0"
    STOP_CALLS = "8"
    ANOTHER_CASE = "9"


BACK_TO: Mapping[Step, Step] = {
    Step.AGENCY: Step.LANGUAGE,
    Step.PICK_AGENCY: Step.AGENCY,
    Step.CASE: Step.AGENCY,
    Step.MENU: Step.AGENCY,
    Step.PIN: Step.MENU,
    Step.PIN_AGAIN: Step.PIN,
    Step.STOP_PIN: Step.MENU,
}


@dataclass(frozen=True)
class Entry:
    """How a step's ``<Gather>`` listens."""

    num_digits: int | None = None
    finish_on_key: str = "#"
    timeout: int = 8


ENTRIES: Mapping[Step, Entry] = {
    Step.LANGUAGE: Entry(num_digits=1),
    Step.AGENCY: Entry(timeout=10),
    Step.PICK_AGENCY: Entry(num_digits=1),
    Step.CASE: Entry(timeout=15),
    Step.MENU: Entry(num_digits=1),
    Step.PIN: Entry(num_digits=PIN_DIGITS, timeout=10),
    Step.PIN_AGAIN: Entry(num_digits=PIN_DIGITS, timeout=10),
    Step.STOP_PIN: Entry(num_digits=PIN_DIGITS, timeout=10),
}


class CallState(BaseModel):
    """Where a call is. Every field is short ASCII, so the signed query string needs no escaping."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    step: Step = Step.LANGUAGE
    language: Language = Language.ENGLISH
    agency_code: str | None = Field(default=None, pattern=r"^\d{5}$")
    agency_id: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    case: str | None = Field(default=None, pattern=r"^\d{1,20}$")
    silent: int = Field(default=0, ge=0, le=1)
    wrong: int = Field(default=0, ge=0, le=MAX_WRONG)
    pin_check: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    """The keyed hash of the first PIN entry (never the PIN), to compare the second entry with."""

    def at(self, step: Step, **changes: object) -> CallState:
        """The same call at ``step``, with its counters of silences and wrong keys reset."""
        return self.model_copy(update={"step": step, "silent": 0, "wrong": 0, **changes})


# --- the state in the query string ------------------------------------------------------------------------------

_QUERY_NAMES = {
    "step": "s",
    "language": "l",
    "agency_code": "g",
    "agency_id": "a",
    "case": "c",
    "silent": "n",
    "wrong": "w",
    "pin_check": "p",
}


def _state_signature(secret: str, call_sid: str, query: str) -> str:
    return hmac.new(secret.encode(), f"hotline:{call_sid}:{query}".encode(), hashlib.sha256).hexdigest()[:32]


def encode_state(state: CallState, secret: str, call_sid: str) -> str:
    """The query string carrying ``state``, signed and bound to this call (no other call can replay it)."""
    values = state.model_dump(mode="json", exclude_defaults=True)
    query = urlencode([(_QUERY_NAMES[name], str(values[name])) for name in _QUERY_NAMES if name in values])
    return urlencode([("sig", _state_signature(secret, call_sid, query))]) + ("&" + query if query else "")


class BadStateError(ValueError):
    """A query string we did not sign for this call."""


def decode_state(params: Mapping[str, str], raw_query: str, secret: str, call_sid: str) -> CallState:
    signature = params.get("sig", "")
    _, _, query = raw_query.partition("&") if raw_query.startswith("sig=") else ("", "", "")
    if not hmac.compare_digest(signature, _state_signature(secret, call_sid, query)):
        raise BadStateError("the call state is not signed for this call")
    names = {short: name for name, short in _QUERY_NAMES.items()}
    try:
        return CallState.model_validate({names[key]: value for key, value in params.items() if key in names})
    except ValidationError as error:
        raise BadStateError("the call state is not valid") from error


# --- what is said -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One ``<Say>``: a phrase of ``hotline.j2`` with its values, in ``language`` (else the call's)."""

    phrase: str
    values: Mapping[str, object] = field(default_factory=dict)
    language: Language | None = None


@dataclass(frozen=True)
class Reply:
    """What a webhook answers: lines to say, then a question (a Gather at ``ask.step``), a Dial, or a hang-up."""

    said: tuple[Line, ...] = ()
    ask: CallState | None = None
    prompt: tuple[Line, ...] = ()
    """Said inside the Gather before its question (the choices of :data:`Step.PICK_AGENCY`)."""
    dial: str | None = None


def spell(value: str) -> str:
    """Digits one by one ("4 8 2 1"), so a voice does not read a number as thousands."""
    return " ".join(character for character in value if character.isalnum())


def agency_code(agency_id: str) -> str:
    """An agency's 5-digit hotline number, derived from its id: the same on every replica and after every restart,
    with nothing stored. Two agencies may share one; the caller then picks by name (:data:`Step.PICK_AGENCY`)."""
    digest = hashlib.sha256(f"hotline-agency:{agency_id}".encode()).digest()
    return str(10_000 + int.from_bytes(digest[:8], "big") % 90_000)


def question(state: CallState) -> tuple[Line, ...]:
    """The words of a step's question (said inside its Gather)."""
    if state.step is Step.LANGUAGE:
        return (Line("ask_language", language=Language.ENGLISH), Line("ask_language", language=Language.SPANISH))
    return (Line(f"ask_{state.step.value.replace('-', '_')}"),)


def greeting() -> Reply:
    """The start of every call, in both languages: what this line is and is not, then the language."""
    return Reply(
        said=(Line("greeting", language=Language.ENGLISH), Line("greeting", language=Language.SPANISH)),
        ask=CallState(),
    )


def silence(state: CallState) -> Reply:
    """Nothing pressed: ask once more, then goodbye."""
    if state.silent == 0:
        return Reply(said=(Line("nothing_heard"),), ask=state.model_copy(update={"silent": 1}))
    return goodbye("goodbye_silent")


def wrong_key(state: CallState, phrase: str = "wrong_key") -> Reply:
    if state.wrong + 1 >= MAX_WRONG:
        return goodbye("goodbye_wrong", first=Line(phrase))
    return Reply(said=(Line(phrase),), ask=state.model_copy(update={"wrong": state.wrong + 1, "silent": 0}))


def goodbye(phrase: str, *, first: Line | None = None) -> Reply:
    return Reply(said=(*([first] if first else []), Line(phrase)))


def refused(phrase: str) -> Reply:
    """A call we will not serve (over the rate limit): said in both languages, then a hang-up."""
    return Reply(said=(Line(phrase, language=Language.ENGLISH), Line(phrase, language=Language.SPANISH)))


class Pressed(StrEnum):
    """What the keys pressed at a step mean."""

    NOTHING = "nothing"
    BACK = "back"
    CHOICE = "choice"
    WRONG = "wrong"


def read_keys(step: Step, digits: str) -> tuple[Pressed, str]:
    """Classify the keys Twilio reports (``Digits``, without the finishing key) at ``step``."""
    keys = digits.strip()
    if not keys:
        return Pressed.NOTHING, ""
    if keys == BACK and step in BACK_TO:
        return Pressed.BACK, ""
    if not keys.isascii() or not keys.isdigit():
        return Pressed.WRONG, keys
    valid = {
        Step.LANGUAGE: keys in ("1", "2"),
        Step.AGENCY: len(keys) == AGENCY_CODE_DIGITS or keys == LIST_AGENCIES,
        Step.PICK_AGENCY: len(keys) == 1 and 1 <= int(keys) <= MAX_PICK,
        Step.CASE: len(keys) <= MAX_CASE_DIGITS,
        Step.MENU: keys in {choice.value for choice in MenuChoice},
        Step.PIN: True,
        Step.PIN_AGAIN: True,
        Step.STOP_PIN: True,
    }[step]
    return (Pressed.CHOICE, keys) if valid else (Pressed.WRONG, keys)


def language_of(keys: str) -> Language:
    return Language.SPANISH if keys == "2" else Language.ENGLISH


def pin_refusal(pin: str) -> str | None:
    """The phrase that refuses a PIN, with the registration's rules (domain/pin.py); None when it is fine."""
    if len(pin) != PIN_DIGITS:
        return "pin_length"
    return None if pin_problem(pin) is None else "pin_easy"


def back(state: CallState) -> Reply:
    """One step back: the question of the step before, and what that step needs forgotten."""
    target = BACK_TO[state.step]
    forget: dict[str, object] = {"pin_check": None}
    if target in (Step.LANGUAGE, Step.AGENCY):
        forget |= {"agency_code": None, "agency_id": None, "case": None}
    return Reply(ask=state.at(target, **forget))


def stop_refused(state: CallState) -> Reply:
    """A PIN that stops no calls: wrong, or this number gets no calls about the case (said the same way)."""
    return wrong_key(state, "stop_pin_wrong")
