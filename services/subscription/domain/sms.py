"""Inbound SMS keywords and the TwiML replies to them."""

from __future__ import annotations

from enum import StrEnum
from xml.sax.saxutils import escape

from shared.vocabulary import Language


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


def reply_text(keyword: Keyword, language: Language, *, service_name: str, help_url: str) -> str | None:
    texts = {
        Language.ENGLISH: {
            Keyword.STOP: f"{service_name}: you will get no more text messages. Reply START to resume.",
            Keyword.START: f"{service_name}: text messages resumed. Reply STOP to stop, HELP for help.",
            Keyword.HELP: (
                f"{service_name} sends custody status notices for crime victims. "
                f"Reply STOP to stop texts, START to resume. Help: {help_url}"
            ),
            Keyword.ACKNOWLEDGE: f"{service_name}: thank you, your confirmation was received.",
        },
        Language.SPANISH: {
            Keyword.STOP: f"{service_name}: no recibirá más mensajes de texto. Responda START para reanudarlos.",
            Keyword.START: f"{service_name}: mensajes reanudados. Responda STOP para detenerlos, HELP para ayuda.",
            Keyword.HELP: (
                f"{service_name} envía avisos sobre la custodia para víctimas de delitos. "
                f"Responda STOP para detener los mensajes, START para reanudarlos. Ayuda: {help_url}"
            ),
            Keyword.ACKNOWLEDGE: f"{service_name}: gracias, recibimos su confirmación.",
        },
    }
    return texts[language].get(keyword)


def twiml(message: str | None) -> str:
    body = f"<Message>{escape(message)}</Message>" if message else ""
    return f'<?xml version="1.0" encoding="UTF-8"?><Response>{body}</Response>'
