"""Inbound SMS keywords, and the TwiML answer with a reply (built by the twilio package; the words are in
``templates/<language>/sms/``)."""

from __future__ import annotations

from enum import StrEnum

from twilio.twiml.messaging_response import MessagingResponse


class Keyword(StrEnum):
    STOP = "stop"
    START = "start"
    HELP = "help"
    ACKNOWLEDGE = "acknowledge"
    OTHER = "other"


STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START_WORDS = frozenset({"START", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO", "AYUDA"})
ACK_WORDS = frozenset({"OK", "OKAY", "ACK", "YES", "SI", "SÍ", "1"})


def classify(body: str) -> Keyword:
    """Carriers match a keyword as the whole message, ignoring case, spaces and trailing punctuation."""
    word = body.strip().strip(".!¡?¿,;:\"'").strip().upper()
    if word in STOP_WORDS:
        return Keyword.STOP
    if word in START_WORDS:
        return Keyword.START
    if word in HELP_WORDS:
        return Keyword.HELP
    if word in ACK_WORDS:
        return Keyword.ACKNOWLEDGE
    return Keyword.OTHER


def twiml(message: str | None) -> str:
    """The answer to Twilio's inbound webhook: the reply to send, or nothing."""
    response = MessagingResponse()
    if message:
        response.message(message)
    return str(response.to_xml(xml_declaration=True))
