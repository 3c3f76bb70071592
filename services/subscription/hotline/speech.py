"""Every word the hotline says, from ``templates/<language>/hotline.j2`` (one macro per phrase); undefined values
and unknown phrases raise (StrictUndefined)."""

from __future__ import annotations

from typing import Any

from services.subscription.hotline.domain import Line
from services.subscription.rendering import Renderer, default_renderer
from shared.vocabulary import Language


class Speech:
    def __init__(self, service_name: str, renderer: Renderer | None = None) -> None:
        words = renderer or default_renderer()  # plain text: VoiceResponse escapes it into TwiML
        self._phrases: dict[Language, Any] = {
            language: words.phrasebook("hotline", language, service=service_name) for language in Language
        }

    def phrase_names(self, language: Language) -> set[str]:
        module = self._phrases[language]
        return {name for name in dir(module) if not name.startswith("_") and callable(getattr(module, name))}

    def say(self, line: Line, language: Language) -> str:
        """The text of ``line`` in ``language`` (the line's own language first), on one line."""
        phrase = getattr(self._phrases[line.language or language], line.phrase, None)
        if not callable(phrase):
            raise LookupError(f"the hotline has no phrase {line.phrase!r}")
        return " ".join(str(phrase(**line.values)).split())
