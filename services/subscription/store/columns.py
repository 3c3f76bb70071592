"""Column lists derived from the models the rows become, so a field is named once."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel


def fields_of(model: type[BaseModel], *, without: Iterable[str] = ()) -> tuple[str, ...]:
    skipped = set(without)
    return tuple(name for name in model.model_fields if name not in skipped)


def column_list(model: type[BaseModel], *, without: Iterable[str] = (), alias: str = "") -> str:
    """``"a, b, c"`` (or ``"s.a, s.b, s.c"`` with ``alias="s"``) for a SELECT of the model's fields."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + name for name in fields_of(model, without=without))


def placeholders(count: int, *, start: int = 1) -> str:
    return ", ".join(f"${number}" for number in range(start, start + count))
