"""Column lists derived from the models that rows become, so a column is named once (in its model)."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel


def fields_of(model: type[BaseModel], *, without: Iterable[str] = ()) -> tuple[str, ...]:
    skipped = set(without)
    return tuple(name for name in model.model_fields if name not in skipped)


def column_list(model: type[BaseModel], *, without: Iterable[str] = (), alias: str = "") -> str:
    """``"a", "b"`` (or ``s."a", s."b"`` with ``alias="s"``) for a SELECT or an INSERT of the model's fields; quoted,
    since a field may be called like a keyword (``offset``)."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(f'{prefix}"{name}"' for name in fields_of(model, without=without))


def placeholders(count: int, *, start: int = 1) -> str:
    return ", ".join(f"${number}" for number in range(start, start + count))
