"""A person moves from a county jail to immigration detention, through public APIs only: booked there under the
same A-number, the county's subscriber is told once who holds the person now, then gets that agency's notices
with its hotline; a booking under another number reaches nobody."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from devservers.driver import SystemDriver, custody_record

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

HOTLINE = "+15125550177"


async def test_a_subscription_follows_the_person_to_the_agency_that_books_them(system: SystemDriver) -> None:
    token = uuid.uuid4().hex[:6]
    county, detention = f"county-{token}", f"ice-{token}"
    case, a_number = f"CR-{token}", f"A{int(token, 16) % 10**9:09d}"
    county_key = await system.create_agency(county)
    detention_key = await system.create_agency(detention)
    resources = {"contacts": [{"role": "hotline", "name": "Detention victim line", "phone": HOTLINE}]}
    assert (await system.admin("PUT", f"/agencies/{detention}/resources", json=resources)).status_code == 200
    sms = f"+1512557{int(token, 16) % 10000:04d}"
    victim = await system.subscribe(county, case, sms=sms)
    await system.verify(victim, "sms")
    await system.wait_for_matching(county, reachable_contacts=1)

    at_county = {"person_number": a_number}
    await system.push(county, county_key, [custody_record(f"c1-{token}", case, "BOOKED", **at_county)])
    await asyncio.sleep(0.3)
    moved = at_county | {"transferred_to_agency_id": detention, "transfer_destination": "Valley Detention"}
    await system.push(county, county_key, [custody_record(f"c2-{token}", case, "TRANSFERRED", **moved)])
    await system.wait_for("sms", sms, lambda m: len(m) >= 3)

    there = {"person_number": a_number.lower(), "booking_number": f"ICE-{token}", "case_numbers": []}
    stranger = {"person_number": f"A{token}999", "booking_number": f"ICE-X-{token}", "case_numbers": []}
    await system.push(
        detention,
        detention_key,
        [
            custody_record(f"d1-{token}", "x", "BOOKED", **there),
            custody_record(f"d2-{token}", "y", "BOOKED", **stranger),
        ],
    )
    messages = await system.wait_for("sms", sms, lambda m: len(m) >= 4)
    held = str(messages[3]["body"])
    assert f"is now held by {detention} jail" in held, held
    assert held.startswith(f"Custody Watch - {detention} jail:")
    assert HOTLINE in held  # the agency now holding the person: its hotline
    assert f"(case {case.upper()})" in held  # the victim's own case number, not the detention's booking

    await system.push(detention, detention_key, [custody_record(f"d3-{token}", "x", "RELEASED", **there)])
    messages = await system.wait_for("sms", sms, lambda m: len(m) >= 5)
    released = str(messages[4]["body"])
    assert "was RELEASED" in released
    assert f"Need help now? {HOTLINE}." in released
    await asyncio.sleep(3)  # a notice about the stranger, or a second "now held by", would have arrived by now
    assert len(await system.received("sms", sms)) == 5
