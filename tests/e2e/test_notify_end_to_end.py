"""An agency pushes a feed; verified victims get SMS and email in their language; unverified or stopped ones get
nothing. Only public APIs and what the provider sinks received."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from devservers.driver import SystemDriver, custody_record

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def phone(n: int) -> str:
    return f"+1512555{n:04d}"


async def test_feed_to_victims_in_their_language(system: SystemDriver) -> None:
    token = uuid.uuid4().hex[:6]
    agency = f"e2e-{token}"
    case = f"CR-{token}"
    key = await system.create_agency(agency)
    base = int(token, 16) % 9000

    english = await system.subscribe(agency, case, sms=phone(base), email=f"victim-{token}@example.org")
    spanish = await system.subscribe(agency, case, sms=phone(base + 1), language="es")
    await system.subscribe(agency, case, sms=phone(base + 2))  # never verified
    stopped = await system.subscribe(agency, case, sms=phone(base + 3))
    await system.verify(english, "sms")
    await system.verify(english, "email")
    await system.verify(spanish, "sms")
    await system.verify(stopped, "sms")
    assert (await system.reply_sms(phone(base + 3), "STOP")).status_code == 200
    # English SMS + email and Spanish SMS; the never-verified and the stopped numbers are not reachable.
    await system.wait_for_matching(agency, reachable_contacts=3)

    await system.push(agency, key, [custody_record(f"r1-{token}", case, "BOOKED")])
    await asyncio.sleep(0.5)
    await system.push(agency, key, [custody_record(f"r2-{token}", case, "RELEASED_BOND")])

    def bodies(messages: list[dict[str, object]]) -> list[str]:
        return [str(m.get("body") or m.get("subject")) for m in messages]

    # Each verified contact: its code, then the booking, then the release — each exactly once.
    await system.wait_for("sms", phone(base), lambda m: len(m) >= 3)
    await system.wait_for("sms", phone(base + 1), lambda m: len(m) >= 3)
    await system.wait_for("email", english.email or "", lambda m: len(m) >= 3)
    await asyncio.sleep(3)  # anything extra (a duplicate, a notice to the wrong person) would arrive by now

    english_sms = bodies(await system.received("sms", phone(base)))
    assert len(english_sms) == 3, english_sms
    assert "your code is" in english_sms[0]
    assert "BOOKED INTO CUSTODY" in english_sms[1]
    assert "RELEASED (on bond)" in english_sms[2]
    assert "Reply STOP to end" in english_sms[2]
    spanish_sms = bodies(await system.received("sms", phone(base + 1)))
    assert len(spanish_sms) == 3, spanish_sms
    assert "su clave es" in spanish_sms[0]
    assert "DETENIDO" in spanish_sms[1]
    assert "LIBERADO" in spanish_sms[2]
    emails = bodies(await system.received("email", english.email or ""))
    assert len(emails) == 3, emails
    assert "BOOKED INTO CUSTODY" in emails[1]
    assert emails[2].startswith("URGENT")
    assert "RELEASED" in emails[2]
    # The never-verified and the stopped numbers got their code and nothing else.
    for silent in (phone(base + 2), phone(base + 3)):
        received = bodies(await system.received("sms", silent))
        assert len(received) == 1, received
        assert "code" in received[0]
