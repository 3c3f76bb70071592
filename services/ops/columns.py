"""Column lists derived from the models that rows become, so a column is named once (in its model)."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel


def fields_of(model: type[BaseModel], *, without: Iterable[str] = ()) -> tuple[str, ...]:
    skipped = set(without)
    return tuple(name for name in model.model_fields if name not in skipped)


def column_list(model: type[BaseModel], *, without: Iterable[str] = ()) -> str:
    """``"a", "b", "c"`` for a SELECT or an INSERT of the model's fields (quoted: ``offset`` is a keyword)."""
    return ", ".join(f'"{name}"' for name in fields_of(model, without=without))


def placeholders(count: int) -> str:
    return ", ".join(f"${number}" for number in range(1, count + 1))
