"""Every notice kind is a valid TwiML call in every language: Twilio's voices, within its lengths, escaped."""

from __future__ import annotations

from xml.etree.ElementTree import Element

import pytest
from defusedxml import ElementTree

from services.delivery.rendering import (
    SAY_MAX_BYTES,
    TWIML_MAX_CHARACTERS,
    VOICES,
    CallStep,
    render_call,
    spell_out,
)
from shared.events import NotificationKind
from shared.vocabulary import Channel, CustodyStatus, Language
from tests.delivery.test_rendering import AGENCY, CASES, facts, notice, secret_for

ACTION_URL = "https://notify.example.org/v1/calls/n-1.a1/pin?try=1&lang=en"
STEPS = [
    (CallStep.NOTICE, True),
    (CallStep.NOTICE, False),
    (CallStep.MACHINE, True),
    *((step, True) for step in (CallStep.REPEAT, CallStep.WRONG, CallStep.ACCEPTED, CallStep.LOCKED, CallStep.GOODBYE)),
]


def parse(twiml: str) -> Element:
    root = ElementTree.fromstring(twiml)
    assert root.tag == "Response"
    return root


@pytest.mark.parametrize(("kind", "language", "status"), CASES)
@pytest.mark.parametrize(("step", "confirm"), STEPS)
def test_every_call_is_valid_twiml_within_twilios_lengths(
    kind: NotificationKind, language: Language, status: CustodyStatus, step: CallStep, confirm: bool
) -> None:
    call = render_call(
        notice(kind, language, Channel.VOICE, status=status),
        AGENCY,
        step=step,
        confirm=confirm,
        action_url=ACTION_URL,
        secret=secret_for(kind),
    )
    assert len(call.twiml) <= TWIML_MAX_CHARACTERS
    root = parse(call.twiml)
    says = list(root.iter("Say"))
    assert says
    voice, language_tag = VOICES[language]
    for say in says:
        assert say.get("voice") == voice
        assert say.get("language") == language_tag
        assert say.text
        assert len(say.text.encode()) <= SAY_MAX_BYTES
        assert "None" not in say.text
    gathers = list(root.iter("Gather"))
    asks_for_pin = step in (CallStep.REPEAT, CallStep.WRONG) or (step is CallStep.NOTICE and confirm)
    assert len(gathers) == (1 if asks_for_pin else 0)
    for gather in gathers:
        assert gather.get("input") == "dtmf"
        assert gather.get("numDigits") == "4"
        assert gather.get("action") == ACTION_URL
    if step in (CallStep.NOTICE, CallStep.MACHINE):
        said = " ".join(say.text or "" for say in says)
        assert call.spoken in said
        assert "Harris County Jail" in said
        assert root[-1].tag == "Hangup"


@pytest.mark.parametrize(
    ("language", "words"),
    [(Language.ENGLISH, ("urgent call", "was RELEASED", "PIN")), (Language.SPANISH, ("llamada urgente", "LIBERADO"))],
)
def test_a_release_names_the_person_the_status_and_the_agency_in_the_victims_language(
    language: Language, words: tuple[str, ...]
) -> None:
    call = render_call(
        notice(NotificationKind.STATUS_CHANGE, language, Channel.VOICE, status=CustodyStatus.RELEASED),
        AGENCY,
        step=CallStep.NOTICE,
        confirm=True,
        action_url=ACTION_URL,
    )
    said = " ".join(say.text or "" for say in parse(call.twiml).iter("Say"))
    for expected in (*words, "JOHNATHAN Q. DOE", "Harris County Jail", "2 0 2 6 C R 0 0 4 5 1 2"):
        assert expected in said


def test_a_machine_gets_the_message_without_the_pin_prompt_and_hears_it_will_be_called_again() -> None:
    call = render_call(
        notice(NotificationKind.STATUS_CHANGE, Language.ENGLISH, Channel.VOICE, status=CustodyStatus.ESCAPED),
        AGENCY,
        step=CallStep.MACHINE,
        confirm=True,
        action_url=ACTION_URL,
    )
    root = parse(call.twiml)
    assert not list(root.iter("Gather"))
    said = " ".join(say.text or "" for say in root.iter("Say"))
    assert "ESCAPED" in said
    assert "call again" in said
    assert "enter your 4-digit PIN" not in said


def test_words_from_a_feed_are_escaped_and_the_twiml_stays_valid() -> None:
    hostile = facts(CustodyStatus.RELEASED, display_name='DOE </Say><Dial>+15550000000</Dial> & "X"')
    call = render_call(
        notice(NotificationKind.STATUS_CHANGE, Language.ENGLISH, Channel.VOICE, custody=hostile),
        AGENCY,
        step=CallStep.NOTICE,
        confirm=True,
        action_url=ACTION_URL,
    )
    root = parse(call.twiml)
    assert not list(root.iter("Dial"))
    assert any("</Say><Dial>" in (say.text or "") for say in root.iter("Say"))


def test_codes_and_numbers_are_read_digit_by_digit() -> None:
    assert spell_out("482913") == "4 8 2 9 1 3"
    assert spell_out("+1 713-555-0199") == "1 7 1 3 5 5 5 0 1 9 9"
    call = render_call(
        notice(NotificationKind.VERIFICATION, Language.SPANISH, Channel.VOICE),
        AGENCY,
        step=CallStep.NOTICE,
        confirm=False,
        action_url=None,
        secret="482913",
    )
    assert call.spoken.count("4 8 2 9 1 3") == 2
    assert "482913" not in call.twiml
