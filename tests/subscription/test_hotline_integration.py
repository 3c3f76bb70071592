"""The hotline in-process, the voice sink playing the caller against the running subscription service: agencies that
share a number, the agency list, silence and wrong keys, going back, a hidden number, an agency without a line to
connect to, 0 dialling the profile's victim-services line, what registering by phone stores and publishes (a
verified voice contact, encrypted, the PIN hashed, no code call), and stopping those calls with the PIN."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest

from devservers.ports import free_port
from devservers.sinks.http_server import EmbeddedHttpServer
from devservers.sinks.voice import VoiceSink, VoiceSinkConfig
from services.subscription.app import create_app
from services.subscription.hotline.domain import agency_code
from services.subscription.settings import SubscriptionSettings
from shared.events import AgencyContact, AgencyProfile, AgencyResources, CustodyStatusChanged, SubjectIdentifier
from shared.pin import pin_matches
from shared.topics import AGENCY_PROFILE, CUSTODY_STATUS_CHANGED
from shared.vocabulary import ContactRole, CustodyStatus, IdentifierKind
from tests.subscription.conftest import AGENCY_ID, Harness

pytestmark = pytest.mark.integration

HOTLINE = "+18005550177"
CALLERS = (f"+1312555{n:04d}" for n in itertools.count(7000))
CASE_DIGITS = "20260001"


def sharing_a_number() -> tuple[str, str, str]:
    """Two agency ids whose hotline numbers are the same, and that number."""
    seen: dict[str, str] = {}
    for n in itertools.count():
        agency_id = f"shared-{n}"
        code = agency_code(agency_id)
        if code in seen:
            return seen[code], agency_id, code
        seen[code] = agency_id
    raise AssertionError  # pragma: no cover - the loop ends


@pytest.fixture
async def line(
    subscription_settings: SubscriptionSettings, pool: asyncpg.Pool
) -> AsyncIterator[tuple[Harness, VoiceSink]]:
    """The service over real HTTP on a local port, its public URL (what it signs and links) that port's, and the
    voice sink's hotline number calling it there."""
    port = free_port()
    public_url = f"http://127.0.0.1:{port}"
    settings = subscription_settings.model_copy(update={"public_base_url": public_url})
    service = EmbeddedHttpServer(create_app(settings), host="127.0.0.1", port=port)
    await service.start()
    try:
        async with httpx.AsyncClient(base_url=public_url) as client:
            harness = Harness(client=client, settings=settings, pool=pool, kafka=settings.kafka)
            await harness.add_agency()
            config = VoiceSinkConfig(ring_seconds=0, inbound_numbers={HOTLINE: f"{public_url}/v1/hotline/voice"})
            async with VoiceSink(auth_token=settings.twilio_auth_token, config=config) as sink:
                yield harness, sink
    finally:
        await service.stop()


async def call(sink: VoiceSink, digits: list[str], caller: str | None = None) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=sink.url) as client:
        answer = await client.post(
            "/sink/inbound-calls", json={"from": caller or next(CALLERS), "to": HOTLINE, "digits": digits}
        )
    assert answer.status_code == 201, answer.text
    played: dict[str, Any] = answer.json()
    assert played["errors"] == []
    return played


def said(played: dict[str, Any]) -> list[str]:
    return [entry["text"] for entry in played["said"]]


async def booked(harness: Harness, agency_id: str = AGENCY_ID) -> None:
    change = CustodyStatusChanged(
        agency_id=agency_id,
        subject_id="s-1",
        identifiers=[SubjectIdentifier(kind=IdentifierKind.CASE_NUMBER, value=f"CR-{CASE_DIGITS}")],
        facility="Division 9",
        status=CustodyStatus.IN_CUSTODY,
        effective_at=datetime(2026, 3, 1, 18, 30, tzinfo=UTC),
        agency_record_id="r-1",
        feed_batch_id="batch-1",
        received_at=datetime.now(UTC),
    )
    event = await harness.publish(CUSTODY_STATUS_CHANGED.name, f"{agency_id}/s-1", change)
    await harness.wait_for("SELECT true FROM processed_events WHERE event_id = $1", event.id, what="the booking")


async def test_agencies_sharing_a_number_are_picked_by_name_and_star_goes_back(
    line: tuple[Harness, VoiceSink],
) -> None:
    harness, sink = line
    first, second, code = sharing_a_number()
    await harness.add_agency(first, name="Adams County Jail")
    await harness.add_agency(second, name="Brown County Jail")
    played = await call(sink, ["1", code + "#", "7", "2", "*", "0#"])
    words = said(played)
    assert "For Adams County Jail, press 1." in words
    assert "For Brown County Jail, press 2." in words
    assert "Sorry, that is not one of the choices." in words  # 7: no third agency
    assert "Brown County Jail." in words
    assert sum(word.startswith("Enter the case number") for word in words) == 1
    listed = " ".join(words)
    assert f"Adams County Jail: {' '.join(code)}." in listed  # 0#: the agencies with their numbers
    assert f"Cook County Jail: {' '.join(agency_code(AGENCY_ID))}." in listed


async def test_silence_is_asked_once_more_and_wrong_keys_three_times(line: tuple[Harness, VoiceSink]) -> None:
    _, sink = line
    silent = await call(sink, ["1"])
    assert said(silent)[-3:] == [
        "We did not hear anything.",
        said(silent)[-2],
        "We did not hear anything. Please call again at any time. Goodbye.",
    ]
    assert silent["ended_by"] == "hangup"
    wrong = await call(sink, ["5", "6", "7"])
    assert said(wrong).count("Sorry, that is not one of the choices.") == 3
    assert said(wrong)[-1] == "Please call again when you are ready. Goodbye."


async def test_a_hidden_number_hears_the_status_but_cannot_register(line: tuple[Harness, VoiceSink]) -> None:
    harness, sink = line
    await booked(harness)
    played = await call(sink, ["1", agency_code(AGENCY_ID), CASE_DIGITS + "#", "1", "0"], caller="+266696687")
    text = played["text"]
    assert "the last status Cook County Jail gave us is: in custody, Division 9." in text
    assert "That was on March 1, 2026, at 12:30 PM." in text  # in the agency's zone (America/Chicago)
    assert "your number is hidden" in text
    assert "This agency has no victim services line we can connect you to." in text  # 0, and no contacts given
    assert played["dialed"] == []
    assert await harness.pool.fetchval("SELECT count(*) FROM subscriptions") == 0


async def test_registering_by_phone_stores_a_verified_voice_contact_and_sends_no_code(
    line: tuple[Harness, VoiceSink],
) -> None:
    harness, sink = line
    await booked(harness)
    caller = next(CALLERS)
    played = await call(sink, ["2", agency_code(AGENCY_ID), CASE_DIGITS + "#", "1", "4821", "4821"], caller=caller)
    assert "Gracias. Este teléfono quedó registrado." in played["text"]
    row = await harness.pool.fetchrow(
        "SELECT s.subscription_id, s.status, s.language, s.identifier_kind, s.identifier_value, c.channel,"
        " c.verified, c.active, c.ciphertext, c.pin_hash"
        " FROM subscriptions s JOIN contact_points c USING (subscription_id)"
    )
    assert row is not None
    assert (row["status"], row["language"], row["channel"], row["verified"], row["active"]) == (
        "active",
        "es",
        "voice",
        True,
        True,
    )
    assert (row["identifier_kind"], row["identifier_value"]) == ("case_number", f"CR-{CASE_DIGITS}")
    assert caller not in row["ciphertext"]
    assert harness.cipher.decrypt(row["ciphertext"]) == caller
    assert pin_matches(harness.settings.blind_index_key, row["subscription_id"], "4821", row["pin_hash"])
    [state] = await harness.states(row["subscription_id"], 1)
    assert state.status == "active"
    assert [(c.channel.value, c.verified) for c in state.contacts] == [("voice", True)]
    assert await harness.pool.fetchval("SELECT count(*) FROM verification_codes") == 0

    again = await call(sink, ["2", agency_code(AGENCY_ID), CASE_DIGITS + "#", "1"], caller=caller)
    assert "Este teléfono ya recibe llamadas sobre este caso." in said(again)
    assert await harness.pool.fetchval("SELECT count(*) FROM subscriptions") == 1


async def test_zero_dials_the_victim_services_line_of_the_agencys_profile(line: tuple[Harness, VoiceSink]) -> None:
    harness, sink = line
    await booked(harness)
    profile = AgencyProfile(
        agency_id=AGENCY_ID,
        name="Cook County Jail",
        timezone="America/Chicago",
        victim_services_phone="(312) 555-0199",
        resources=AgencyResources(
            contacts=[AgencyContact(role=ContactRole.HOTLINE, name="County line", phone="+13125550188")]
        ),
        updated_at=datetime.now(UTC),
    )
    await harness.publish(AGENCY_PROFILE.name, AGENCY_ID, profile)
    await harness.wait_for(
        "SELECT true FROM agencies WHERE agency_id = $1 AND victim_services_phone IS NOT NULL",
        AGENCY_ID,
        what="the victim-services line",
    )
    played = await call(sink, ["1", agency_code(AGENCY_ID), CASE_DIGITS + "#", "0"])
    assert played["dialed"] == ["+13125550199"]  # the profile's line before the resources' hotline contact
    assert played["ended_by"] == "dial"


async def test_stopping_calls_by_phone_takes_the_pin_and_ends_the_voice_contact(
    line: tuple[Harness, VoiceSink],
) -> None:
    harness, sink = line
    await booked(harness)
    caller, code = next(CALLERS), agency_code(AGENCY_ID)
    await call(sink, ["1", code, CASE_DIGITS + "#", "1", "4821", "4821"], caller=caller)
    [subscription_id] = [row["subscription_id"] for row in await harness.pool.fetch("SELECT * FROM subscriptions")]

    stranger = await call(sink, ["1", code, CASE_DIGITS + "#", "8", "4821", "4821", "4821"])
    wrong = await call(sink, ["1", code, CASE_DIGITS + "#", "8", "4812", "4813", "4814"], caller=caller)
    assert said(stranger) == said(wrong)  # nothing tells a stranger from the registered caller with a wrong PIN
    refusal = "That PIN does not stop any calls to this phone about this case."
    assert sum(words.startswith(refusal) for words in said(wrong)) == 3
    assert said(wrong)[-1] == "Please call again when you are ready. Goodbye."
    assert await harness.pool.fetchval("SELECT status FROM subscriptions") == "active"

    stopped = await call(sink, ["1", code, CASE_DIGITS + "#", "8", "4812", "4821"], caller=caller)
    assert said(stopped)[-1].startswith("We will not call this phone again about number 2 0 2 6 0 0 0 1")
    row = await harness.pool.fetchrow("SELECT active, disabled_reason FROM contact_points")
    assert row is not None
    assert (row["active"], row["disabled_reason"]) == (False, "unsubscribed")
    [*_, state] = await harness.states(subscription_id, 2)
    assert state.status == "cancelled"  # its only contact: the same as a cancel, delivery drops the calls to come
    assert [c.active for c in state.contacts] == [False]

    again = await call(sink, ["1", code, CASE_DIGITS + "#", "8", "4821"], caller=caller)
    assert refusal in again["text"]


async def test_after_five_pins_in_a_day_even_the_right_one_stops_nothing(line: tuple[Harness, VoiceSink]) -> None:
    """A caller ID can be spoofed: whoever calls from the victim's number gets five PINs a day, then the same words."""
    harness, sink = line
    await booked(harness)
    caller, code = next(CALLERS), agency_code(AGENCY_ID)
    await call(sink, ["1", code, CASE_DIGITS + "#", "1", "4821", "4821"], caller=caller)
    guesses = await call(sink, ["1", code, CASE_DIGITS + "#", "8", "1111", "2222", "3333"], caller=caller)
    late = await call(sink, ["1", code, CASE_DIGITS + "#", "8", "5555", "6666", "4821"], caller=caller)
    assert said(late) == said(guesses)  # the right PIN, sixth of the day, is refused in the very same words
    assert await harness.pool.fetchval("SELECT status FROM subscriptions") == "active"
