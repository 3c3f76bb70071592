"""Reading rows into models: the column list of a SELECT is derived from the model it fills."""

from __future__ import annotations

from pydantic import BaseModel


def columns_of(model: type[BaseModel]) -> str:
    """``a, b, c``: every field of ``model``, in order (each one a column of the same name)."""
    return ", ".join(model.model_fields)
