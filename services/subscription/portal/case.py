"""What the case and manage pages show besides the subscription: the agency's contacts and referrals (to anyone),
and, to a verified subscriber of an unsealed case, the case information and custody history (domain/case.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from services.subscription import store
from services.subscription.domain.case import may_see_case
from services.subscription.domain.subscription import Subscription
from services.subscription.service import SubscriptionService


def local_time(moment: datetime | None, zone: str) -> str | None:
    return None if moment is None else f"{moment.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M %Z}"


async def resources_context(service: SubscriptionService, agency_id: str) -> dict[str, Any]:
    async with service.pool.acquire() as connection:
        resources = await store.agency_resources(connection, agency_id)
    return {"resources": resources.model_dump(mode="json")}


async def case_context(service: SubscriptionService, subscription: Subscription) -> dict[str, Any]:
    """``case`` and ``history`` for the manage page (None and [] when the subscriber may not see them)."""
    context: dict[str, Any] = {"case": None, "history": [], "assigned": None}
    context |= await resources_context(service, subscription.agency_id)
    if not may_see_case(subscription):
        return context
    async with service.pool.acquire() as connection:
        found = await store.case_file(connection, subscription.agency_id, subscription.identifier)
    if found is None:
        return context
    zone = subscription.timezone
    if found.case is not None:
        case = found.case
        context["case"] = case.model_dump(mode="json") | {
            "next_court_at": local_time(case.next_court_at, zone),
            "scheduled_release_at": local_time(case.scheduled_release_at, zone),
            "bond_amount": None if case.bond_amount is None else f"{case.bond_amount:,.2f}",
        }
        contacts = context["resources"]["contacts"]
        role = case.victim_contact_role
        context["assigned"] = next((c for c in contacts if role is not None and c["role"] == role), None)
    context["history"] = [
        {"status": entry.status.value, "facility": entry.facility, "at": local_time(entry.effective_at, zone)}
        for entry in found.history
    ]
    return context
