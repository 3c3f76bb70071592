"""What the case and manage pages show besides the subscription: the agency's contacts and referrals (to anyone),
and, to a verified subscriber of an unsealed case, the case information and custody history (domain/case.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from services.subscription import flows
from services.subscription.domain.subscription import Subscription
from services.subscription.flows.context import Context


def local_time(moment: datetime | None, zone: str) -> str | None:
    return None if moment is None else f"{moment.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M %Z}"


async def resources_context(context: Context, agency_id: str) -> dict[str, Any]:
    resources = await flows.lookup.agency_resources(context, agency_id)
    return {"resources": resources.model_dump(mode="json")}


async def case_context(context: Context, subscription: Subscription) -> dict[str, Any]:
    """``case`` and ``history`` for the manage page (None and [] when the subscriber may not see them)."""
    shown: dict[str, Any] = {"case": None, "history": [], "assigned": None}
    shown |= await resources_context(context, subscription.agency_id)
    found = await flows.lookup.case_file(context, subscription)
    if found is None:
        return shown
    zone = subscription.timezone
    if found.case is not None:
        case = found.case
        shown["case"] = case.model_dump(mode="json") | {
            "next_court_at": local_time(case.next_court_at, zone),
            "scheduled_release_at": local_time(case.scheduled_release_at, zone),
            "bond_amount": None if case.bond_amount is None else f"{case.bond_amount:,.2f}",
        }
        contacts = shown["resources"]["contacts"]
        role = case.victim_contact_role
        shown["assigned"] = next((c for c in contacts if role is not None and c["role"] == role), None)
    shown["history"] = [
        {"status": entry.status.value, "facility": entry.facility, "at": local_time(entry.effective_at, zone)}
        for entry in found.history
    ]
    return shown
