"""The hotline's menu (pure): what keys mean at each step, silences and wrong keys, going back, the signed state
between steps, agency numbers; and its TwiML: valid XML in both languages, every ``<Say>`` within Twilio's length."""

from __future__ import annotations

from urllib.parse import parse_qsl
from xml.etree.ElementTree import Element

import pytest
from defusedxml import ElementTree

from services.subscription.domain.pin import PIN_DIGITS
from services.subscription.hotline import domain
from services.subscription.hotline.domain import (
    ENTRIES,
    MAX_WRONG,
    BadStateError,
    CallState,
    Line,
    Pressed,
    Reply,
    Step,
    decode_state,
    encode_state,
    read_keys,
)
from services.subscription.hotline.flows import resource_lines
from services.subscription.hotline.speech import Speech
from services.subscription.hotline.twiml import render
from shared.events import AgencyContact, AgencyResources, Referral
from shared.vocabulary import ContactRole, CustodyStatus, Language, ReferralCategory

SECRET = "hotline-test-secret-hotline-test-secret"
CALL = "CA0123456789abcdef0123456789abcdef"
SAY_MAX_BYTES = 3000
"""Twilio reads at most this many bytes in one ``<Say>`` with a Polly voice (warning 13521 beyond)."""

SAMPLES: dict[str, dict[str, object]] = {
    "agency_entry": {"name": "Cook County Jail", "code": "4 8 2 1 7"},
    "pick_agency_entry": {"index": 2, "name": "Cook County Jail"},
    "agency_chosen": {"name": "Cook County Jail"},
    "no_information": {"number": "2 0 2 6 0 0 0 1"},
    "registered": {"agency": "Cook County Jail", "number": "2 0 2 6 0 0 0 1"},
    "calls_stopped": {"agency": "Cook County Jail", "number": "2 0 2 6 0 0 0 1"},
    "contact": {"role": "hotline", "name": "Victim services", "phone": "3 1 2 5 5 5 0 1 0 0", "hours": "9 to 5"},
    "referral": {"category": "shelter", "name": "Safe House", "phone": "3 1 2 5 5 5 0 1 9 9"},
}
STATUS_SAMPLE = {
    "agency": "Cook County Jail",
    "number": "2 0 2 6 0 0 0 1",
    "facility": "Main Jail",
    "year": 2026,
    "month": 12,
    "day": 1,
    "hour": 15,
    "minute": 5,
}


@pytest.fixture(scope="module")
def speech() -> Speech:
    return Speech("Custody Watch")


def every_line(speech: Speech) -> list[Line]:
    lines = [
        Line(name, SAMPLES.get(name, {})) for name in sorted(speech.phrase_names(Language.ENGLISH)) if name != "status"
    ]
    lines += [Line("status", STATUS_SAMPLE | {"status": status.value}) for status in CustodyStatus]
    return lines


def twiml_of(reply: Reply, language: Language, speech: Speech) -> Element:
    xml = render(
        reply,
        language,
        speech,
        lambda state: f"https://x.test/v1/hotline/voice/step?{encode_state(state, SECRET, CALL)}",
    )
    root: Element = ElementTree.fromstring(xml)
    assert root.tag == "Response"
    return root


# --- keys -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "digits", "expected"),
    [
        (Step.LANGUAGE, "", Pressed.NOTHING),
        (Step.LANGUAGE, "1", Pressed.CHOICE),
        (Step.LANGUAGE, "2", Pressed.CHOICE),
        (Step.LANGUAGE, "3", Pressed.WRONG),
        (Step.LANGUAGE, "*", Pressed.WRONG),  # nothing before the start
        (Step.AGENCY, "48217", Pressed.CHOICE),
        (Step.AGENCY, "0", Pressed.CHOICE),  # the list of agencies
        (Step.AGENCY, "4821", Pressed.WRONG),
        (Step.AGENCY, "*", Pressed.BACK),
        (Step.PICK_AGENCY, "3", Pressed.CHOICE),
        (Step.PICK_AGENCY, "9", Pressed.WRONG),
        (Step.CASE, "20260001", Pressed.CHOICE),
        (Step.CASE, "2" * 21, Pressed.WRONG),
        (Step.CASE, "12*4", Pressed.WRONG),
        (Step.CASE, "*", Pressed.BACK),
        (Step.MENU, "1", Pressed.CHOICE),
        (Step.MENU, "2", Pressed.CHOICE),
        (Step.MENU, "0", Pressed.CHOICE),
        (Step.MENU, "8", Pressed.CHOICE),
        (Step.MENU, "9", Pressed.CHOICE),
        (Step.MENU, "5", Pressed.WRONG),
        (Step.PIN, "4821", Pressed.CHOICE),
        (Step.PIN, "*", Pressed.BACK),
        (Step.PIN_AGAIN, "*", Pressed.BACK),
        (Step.STOP_PIN, "4821", Pressed.CHOICE),
        (Step.STOP_PIN, "1111", Pressed.CHOICE),  # any PIN is checked against the registration's
        (Step.STOP_PIN, "*", Pressed.BACK),
    ],
)
def test_what_keys_mean_at_each_step(step: Step, digits: str, expected: Pressed) -> None:
    assert read_keys(step, digits)[0] is expected


def test_silence_asks_once_more_then_says_goodbye() -> None:
    state = CallState(step=Step.CASE, agency_id="cook", agency_code="12345")
    again = domain.silence(state)
    assert again.ask == state.model_copy(update={"silent": 1})
    assert [line.phrase for line in again.said] == ["nothing_heard"]
    last = domain.silence(again.ask)
    assert last.ask is None
    assert last.dial is None
    assert [line.phrase for line in last.said] == ["goodbye_silent"]


def test_a_wrong_key_says_so_and_asks_again_at_most_three_times() -> None:
    state = CallState(step=Step.MENU)
    for _ in range(MAX_WRONG - 1):
        reply = domain.wrong_key(state)
        assert reply.said[0].phrase == "wrong_key"
        assert reply.ask is not None
        state = reply.ask
    final = domain.wrong_key(state)
    assert final.ask is None
    assert [line.phrase for line in final.said] == ["wrong_key", "goodbye_wrong"]


def test_every_step_but_the_first_has_a_way_back_that_forgets_what_it_must() -> None:
    case = CallState(step=Step.CASE, agency_id="cook", agency_code="12345", language=Language.SPANISH)
    back = domain.back(case).ask
    assert back == CallState(step=Step.AGENCY, language=Language.SPANISH)
    pin_again = CallState(step=Step.PIN_AGAIN, agency_id="cook", case="1234", pin_check="a" * 64)
    assert domain.back(pin_again).ask == CallState(step=Step.PIN, agency_id="cook", case="1234")
    assert domain.back(CallState(step=Step.PIN, agency_id="cook", case="1")).ask.step is Step.MENU  # type: ignore[union-attr]
    assert set(domain.BACK_TO) == set(Step) - {Step.LANGUAGE}


def test_a_pin_that_stops_nothing_is_asked_again_then_goodbye_the_same_way_every_time() -> None:
    state = CallState(step=Step.STOP_PIN, agency_id="cook", agency_code="12345", case="20260001")
    for _ in range(MAX_WRONG - 1):
        reply = domain.stop_refused(state)
        assert [line.phrase for line in reply.said] == ["stop_pin_wrong"]
        assert reply.ask is not None
        assert reply.ask.step is Step.STOP_PIN
        assert reply.ask.case == "20260001"
        state = reply.ask
    final = domain.stop_refused(state)
    assert final.ask is None
    assert [line.phrase for line in final.said] == ["stop_pin_wrong", "goodbye_wrong"]


def test_stopping_calls_goes_back_to_the_menu_of_the_same_case() -> None:
    stop = CallState(step=Step.STOP_PIN, agency_id="cook", agency_code="12345", case="20260001", wrong=1)
    assert domain.back(stop).ask == CallState(step=Step.MENU, agency_id="cook", agency_code="12345", case="20260001")
    assert ENTRIES[Step.STOP_PIN].num_digits == PIN_DIGITS


@pytest.mark.parametrize(
    ("pin", "refusal"),
    [
        ("4821", None),
        ("482", "pin_length"),
        ("48211", "pin_length"),
        ("1111", "pin_easy"),
        ("1234", "pin_easy"),
        ("9876", "pin_easy"),
        ("1212", "pin_easy"),
        ("1122", "pin_easy"),
        ("1984", "pin_easy"),
    ],
)
def test_pins_are_refused_with_the_registration_rules(pin: str, refusal: str | None) -> None:
    assert domain.pin_refusal(pin) == refusal


def test_agency_numbers_are_five_digits_and_the_same_everywhere() -> None:
    codes = {domain.agency_code(f"agency-{n}") for n in range(500)}
    assert all(len(code) == 5 and code.isdigit() and code[0] != "0" for code in codes)
    assert domain.agency_code("cook-county-jail") == domain.agency_code("cook-county-jail")
    assert len(codes) > 480  # collisions are rare (and then the caller picks by name)


def test_numbers_are_spelled_digit_by_digit() -> None:
    assert domain.spell("+1 (312) 555-0100") == "1 3 1 2 5 5 5 0 1 0 0"


# --- the state between steps ------------------------------------------------------------------------------------


def query_of(state: CallState, call: str = CALL) -> tuple[dict[str, str], str]:
    raw = encode_state(state, SECRET, call)
    return dict(parse_qsl(raw, keep_blank_values=True)), raw


def test_the_state_travels_signed_and_comes_back_the_same() -> None:
    state = CallState(
        step=Step.PIN_AGAIN,
        language=Language.SPANISH,
        agency_id="cook.county-1",
        agency_code="12345",
        case="20260001",
        pin_check="f" * 64,
        silent=1,
        wrong=2,
    )
    params, raw = query_of(state)
    assert decode_state(params, raw, SECRET, CALL) == state
    assert "4821" not in raw


def test_a_changed_or_replayed_state_is_refused() -> None:
    params, raw = query_of(CallState(step=Step.MENU, agency_id="cook", case="1234"))
    with pytest.raises(BadStateError):
        decode_state(params, raw, SECRET, "CAanothercall")
    forged = raw.replace("c=1234", "c=9999")
    with pytest.raises(BadStateError):
        decode_state(dict(parse_qsl(forged)), forged, SECRET, CALL)
    with pytest.raises(BadStateError):
        decode_state({}, "", SECRET, CALL)


def test_a_signed_state_that_breaks_the_model_is_refused() -> None:
    params, raw = query_of(CallState())
    with pytest.raises(BadStateError):
        decode_state(params | {"s": "nowhere"}, raw, SECRET, CALL)


# --- words and TwiML --------------------------------------------------------------------------------------------


def test_both_languages_have_every_phrase(speech: Speech) -> None:
    assert speech.phrase_names(Language.ENGLISH) == speech.phrase_names(Language.SPANISH)


@pytest.mark.parametrize("language", list(Language))
def test_every_phrase_renders_within_the_say_length(speech: Speech, language: Language) -> None:
    for line in every_line(speech):
        text = speech.say(line, language)
        assert text
        assert "{" not in text
        assert len(text.encode()) <= SAY_MAX_BYTES, line.phrase


@pytest.mark.parametrize("language", list(Language))
@pytest.mark.parametrize("step", list(Step))
def test_every_question_is_valid_twiml_with_a_gather_that_hears_silence(
    speech: Speech, language: Language, step: Step
) -> None:
    state = CallState(step=step, language=language, agency_id="cook", agency_code="12345", case="1")
    root = twiml_of(Reply(said=(Line("wrong_key"),), ask=state), language, speech)
    say, gather = list(root)
    assert say.tag == "Say"
    assert gather.tag == "Gather"
    assert gather.get("input") == "dtmf"
    assert gather.get("actionOnEmptyResult") == "true"  # the timeout path: the action hears the silence
    assert gather.get("action", "").startswith("https://x.test/v1/hotline/voice/step?sig=")
    entry = ENTRIES[step]
    assert gather.get("numDigits") == (str(entry.num_digits) if entry.num_digits else None)
    assert all(nested.tag == "Say" and nested.text for nested in gather)
    for spoken in root.iter("Say"):
        assert len((spoken.text or "").encode()) <= SAY_MAX_BYTES


def test_the_greeting_speaks_both_languages_and_says_what_the_line_is_not(speech: Speech) -> None:
    root = twiml_of(domain.greeting(), Language.ENGLISH, speech)
    said = [(say.get("language"), say.get("voice"), say.text or "") for say in root.iter("Say")]
    assert [language for language, _, _ in said] == ["en-US", "es-MX", "en-US", "es-MX"]
    assert {voice for _, voice, _ in said} == {"Polly.Joanna", "Polly.Mia"}
    assert "not a way to report anyone" in said[0][2]
    assert "911" in said[0][2]
    assert "911" in said[1][2]
    assert "For English, press 1." in said[2][2]
    assert "Para español, oprima 2." in said[3][2]


def test_a_goodbye_hangs_up_and_a_connection_dials(speech: Speech) -> None:
    assert [verb.tag for verb in twiml_of(domain.goodbye("goodbye_silent"), Language.SPANISH, speech)] == [
        "Say",
        "Hangup",
    ]
    dial = twiml_of(Reply(said=(Line("connecting"),), dial="+13125550100"), Language.ENGLISH, speech)
    assert [verb.tag for verb in dial] == ["Say", "Dial"]
    assert [verb.text for verb in dial.iter("Dial")] == ["+13125550100"]


def test_a_status_is_said_in_the_callers_language(speech: Speech) -> None:
    line = Line("status", STATUS_SAMPLE | {"status": "released"})
    assert "released" in speech.say(line, Language.ENGLISH)
    assert "December 1, 2026, at 3:05 PM" in speech.say(line, Language.ENGLISH)
    spanish = speech.say(line, Language.SPANISH)
    assert "en libertad" in spanish
    assert "1 de diciembre de 2026, a las 15:05" in spanish


def test_contacts_and_referrals_one_say_each_with_numbers_spelled(speech: Speech) -> None:
    resources = AgencyResources(
        contacts=[AgencyContact(role=ContactRole.HOTLINE, name="Victim line", phone="312-555-0100", hours="24/7")],
        referrals=[Referral(name="Safe House", category=ReferralCategory.SHELTER, phone="312 555 0199")],
    )
    lines = resource_lines(resources)
    texts = [speech.say(line, Language.ENGLISH) for line in lines]
    assert texts[0] == "Hotline: Victim line. Phone: 3 1 2 5 5 5 0 1 0 0. Hours: 24/7."
    assert texts[1] == "Safe place to stay: Safe House. Phone: 3 1 2 5 5 5 0 1 9 9."
    assert "never reports anyone" in texts[2]
    assert [line.phrase for line in resource_lines(AgencyResources())] == ["no_resources"]
