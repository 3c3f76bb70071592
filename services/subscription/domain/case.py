"""What a subscriber may see of a case besides its status: the case information the agency shares and the custody
history. Only a subscriber with a verified contact sees it (anyone can type a case number; only the victim who
proved a contact point holds a manage link worth trusting), never for a sealed subject, never in the lookup."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from services.subscription.domain.subscription import Subscription
from shared.events import CaseInformation
from shared.vocabulary import CustodyStatus


class HistoryEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: CustodyStatus
    facility: str | None
    effective_at: datetime


class CustodyView(BaseModel):
    """What the public lookup tells about a case: the latest status, nothing more."""

    model_config = ConfigDict(frozen=True)

    status: CustodyStatus
    facility: str | None
    effective_at: datetime


class CaseFile(BaseModel):
    model_config = ConfigDict(frozen=True)

    case: CaseInformation | None
    history: list[HistoryEntry]


def may_see_case(subscription: Subscription) -> bool:
    return subscription.status != "cancelled" and any(contact.verified for contact in subscription.contacts)
