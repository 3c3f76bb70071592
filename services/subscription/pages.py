"""The few HTML pages people reach from a link in a message: email verification and one-click unsubscribe."""

from __future__ import annotations

from html import escape

from shared.vocabulary import Language

_PAGE = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>{title}</title></head>
<body style="font-family: sans-serif; max-width: 36em; margin: 2em auto; padding: 0 1em">
<h1>{title}</h1><p>{message}</p>{extra}</body></html>"""

_TITLES_AND_MESSAGES: dict[Language, dict[str, tuple[str, str]]] = {
    Language.ENGLISH: {
        "verified": ("Email verified", "Your email address is verified. You will get custody notices here."),
        "unsubscribe": ("Stop emails?", "Press the button to stop custody notices to this email address."),
        "unsubscribed": ("Emails stopped", "You will get no more custody notices at this email address."),
    },
    Language.SPANISH: {
        "verified": ("Correo verificado", "Su correo está verificado. Recibirá aquí los avisos de custodia."),
        "unsubscribe": ("¿Dejar de recibir correos?", "Pulse el botón para dejar de recibir avisos en este correo."),
        "unsubscribed": ("Correos detenidos", "No recibirá más avisos de custodia en este correo."),
    },
}
_BUTTON = {Language.ENGLISH: "Stop emails", Language.SPANISH: "Dejar de recibir correos"}
_PROBLEM = {Language.ENGLISH: "Something is wrong with this link", Language.SPANISH: "Hay un problema con este enlace"}


def page(kind: str, language: Language = Language.ENGLISH, *, action: str | None = None) -> str:
    title, message = _TITLES_AND_MESSAGES[language][kind]
    extra = ""
    if action is not None:
        extra = (
            f'<form method="post" action="{escape(action)}"><input type="hidden" name="List-Unsubscribe" '
            f'value="One-Click"><button type="submit">{escape(_BUTTON[language])}</button></form>'
        )
    return _PAGE.format(lang=language.value, title=escape(title), message=escape(message), extra=extra)


def problem_page(detail: str, language: Language = Language.ENGLISH) -> str:
    title = _PROBLEM[language]
    return _PAGE.format(lang=language.value, title=escape(title), message=escape(detail), extra="")
