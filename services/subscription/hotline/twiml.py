"""A :class:`~services.subscription.hotline.domain.Reply` as TwiML, built with the twilio package's VoiceResponse:
the lines said, then the step's ``<Gather>`` (whose action is called on silence too), a ``<Dial>``, or a hang-up."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twilio.twiml.voice_response import VoiceResponse

from services.subscription.hotline.domain import ENTRIES, VOICES, CallState, Line, Reply, question
from services.subscription.hotline.speech import Speech
from shared.vocabulary import Language


def render(reply: Reply, language: Language, speech: Speech, action_url: Callable[[CallState], str]) -> str:
    response = VoiceResponse()

    def say(target: Any, line: Line) -> None:
        voice, tag = VOICES[line.language or language]
        target.say(speech.say(line, language), voice=voice, language=tag)

    for line in reply.said:
        say(response, line)
    if reply.ask is not None:
        entry = ENTRIES[reply.ask.step]
        gather = response.gather(
            input="dtmf",
            action=action_url(reply.ask),
            method="POST",
            action_on_empty_result=True,
            timeout=entry.timeout,
            finish_on_key=entry.finish_on_key,
            num_digits=entry.num_digits,
        )
        for line in (*reply.prompt, *question(reply.ask)):
            say(gather, line)
    elif reply.dial is not None:
        response.dial(reply.dial)
    else:
        response.hangup()
    xml: str = response.to_xml()
    return xml
