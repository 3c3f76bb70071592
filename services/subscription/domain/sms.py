"""Inbound SMS keywords and the TwiML envelope of a reply (the words are in ``templates/<language>/sms/``)."""

from __future__ import annotations

from enum import StrEnum
from xml.sax.saxutils import escape


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
    body = f"<Message>{escape(message)}</Message>" if message else ""
    return f'<?xml version="1.0" encoding="UTF-8"?><Response>{body}</Response>'
