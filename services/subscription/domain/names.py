"""Matching a person's name the way a victim types it: case, accents, hyphens and word order do not matter."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from shared.events import SubjectIdentifier
from shared.vocabulary import CustodyStatus

MAX_RESULTS = 10
RELEASED_WITHIN = timedelta(days=30)
# Held somewhere now (moved, or waiting for court, is still held).
HELD_NOW: frozenset[CustodyStatus] = frozenset(
    {
        CustodyStatus.IN_CUSTODY,
        CustodyStatus.RETURNED_TO_CUSTODY,
        CustodyStatus.TRANSFERRED,
        CustodyStatus.COURT_DATE_SET,
    }
)


class NameMatch(BaseModel):
    """One person a search by name found, with the identifier a victim registers with."""

    model_config = ConfigDict(frozen=True)

    display_name: str
    status: CustodyStatus
    effective_at: datetime
    facility: str | None
    identifier: SubjectIdentifier


def name_words(name: str | None) -> list[str]:
    """``"Pérez-Núñez, José"`` -> ``["jose", "nunez", "perez"]``."""
    if not name:
        return []
    folded = unicodedata.normalize("NFKD", name.casefold())
    plain = "".join(character for character in folded if not unicodedata.combining(character))
    return sorted(set(re.findall(r"[a-z0-9]+", plain)))
