"""Every word the subscription service shows, texts or says to a person, from ``templates/``: the portal's pages
(``pages/*.html`` on ``_layout.html``, with the words of ``<language>/_words.j2``), the SMS keyword replies
(``<language>/sms/<keyword>.txt``) and the hotline's phrases (``<language>/hotline.j2``). Undefined variables and
missing words raise (StrictUndefined)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from shared.vocabulary import Language

TEMPLATE_DIRECTORY = Path(__file__).parent / "templates"
LANGUAGES: tuple[tuple[str, str], ...] = (("en", "English"), ("es", "Español"))


class Renderer:
    def __init__(self, directory: Path = TEMPLATE_DIRECTORY) -> None:
        loader = jinja2.FileSystemLoader(directory)
        self._html = jinja2.Environment(
            loader=loader, undefined=jinja2.StrictUndefined, autoescape=True, trim_blocks=True, lstrip_blocks=True
        )
        self._text = jinja2.Environment(
            loader=loader,
            undefined=jinja2.StrictUndefined,
            autoescape=False,  # noqa: S701 - plain text for SMS
            keep_trailing_newline=False,
        )
        self.stylesheet = (directory / "portal.css").read_text(encoding="utf-8")

    def words(self, language: Language) -> Mapping[str, str]:
        words: Mapping[str, str] = self._html.get_template(f"{language.value}/_words.j2").module.words  # type: ignore[attr-defined]
        return words

    def page(self, name: str, language: Language, **context: Any) -> str:
        values = {"errors": [], "csrf_token": "", "switch": {code: f"?lang={code}" for code, _ in LANGUAGES}, **context}
        return self._html.get_template(f"pages/{name}.html").render(
            lang=language.value, w=self.words(language), languages=LANGUAGES, **values
        )

    def phrasebook(self, name: str, language: Language, **context: Any) -> Any:
        """The macros of ``<language>/<name>.j2``, one per phrase: words spoken on a call rather than shown."""
        return self._text.get_template(f"{language.value}/{name}.j2").make_module(context)

    def sms_reply(self, keyword: str, language: Language, **context: Any) -> str | None:
        """The reply to an SMS keyword, or None when the keyword gets none."""
        try:
            template = self._text.get_template(f"{language.value}/sms/{keyword}.txt")
        except jinja2.TemplateNotFound:
            return None
        return " ".join(template.render(context).split())


@lru_cache(maxsize=1)
def default_renderer() -> Renderer:
    return Renderer()
