"""A victim registers a number for calls with a PIN, verifies it with the code a call reads out, and a release
pushed by the agency rings them within seconds in their language; the right PIN acknowledges the notice."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Any

import pytest

from devservers.driver import SystemDriver, custody_record

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SPOKEN_CODE = re.compile(r"(?:code is|clave es) ((?:\d ){5}\d)")


async def calls_to(system: SystemDriver, number: str) -> list[dict[str, Any]]:
    answer = await system.http.get(f"{system.stack.url('voice_sink')}/sink/calls", params={"to": number})
    answer.raise_for_status()
    calls: list[dict[str, Any]] = answer.json()
    return calls


async def ended_calls(system: SystemDriver, number: str, count: int, within: float = 60.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + within
    while True:
        calls = [call for call in await calls_to(system, number) if call["end_time"]]
        if len(calls) >= count:
            return calls
        assert time.monotonic() < deadline, f"{len(calls)} of {count} calls ended"
        await asyncio.sleep(0.2)


@pytest.mark.parametrize(
    ("language", "words"), [("en", ("Test Person", "was RELEASED")), ("es", ("Test Person", "LIBERADO"))]
)
async def test_a_voice_subscriber_is_called_about_a_release_and_confirms_with_the_pin(
    system: SystemDriver, language: str, words: tuple[str, ...]
) -> None:
    token = uuid.uuid4().hex[:8]
    agency = f"voice-{token}"
    key = await system.create_agency(agency)
    case = f"CR-V-{token}"
    number = f"+131255501{uuid.uuid4().int % 100:02d}"
    body = {
        "agency_id": agency,
        "identifier": {"kind": "case_number", "value": case},
        "language": language,
        "timezone": "America/Chicago",
        "quiet_hours": {"start": "00:00", "end": "00:00"},
        "voice": number,
        "pin": "4821",
    }
    deadline = time.monotonic() + 60
    while (
        answer := await system.http.post(f"{system.stack.url('subscription')}/v1/subscriptions", json=body)
    ).status_code == 404:
        assert time.monotonic() < deadline, "the agency never reached the subscription service"
        await asyncio.sleep(0.2)
    assert answer.status_code == 201, answer.text
    created = answer.json()

    [verification] = await ended_calls(system, number, 1)
    spoken = SPOKEN_CODE.search(verification["text"])
    assert spoken is not None, verification["text"]
    verified = await system.http.post(
        f"{system.stack.url('subscription')}/v1/subscriptions/{created['subscription_id']}/verify",
        json={"channel": "voice", "code": spoken.group(1).replace(" ", "")},
        headers={"Authorization": f"Bearer {created['manage_url'].rstrip('/').rsplit('/', 1)[-1]}"},
    )
    assert verified.status_code == 200, verified.text
    assert "PIN" not in verification["text"]  # a code call asks for no PIN
    await system.wait_for_matching(agency, reachable_contacts=1)

    presses = await system.http.post(
        f"{system.stack.url('voice_sink')}/sink/press", json={"number": number, "digits": ["4821"]}
    )
    assert presses.status_code == 204
    pushed = time.monotonic()
    await system.push(agency, key, [custody_record(f"r1-{token}", case, "RELEASED_BOND", name="Test Person")])
    while len(await calls_to(system, number)) < 2:
        assert time.monotonic() - pushed < 2.0, "no call within 2 s of the release"
        await asyncio.sleep(0.05)
    [_, call] = await ended_calls(system, number, 2)
    for expected in (*words, f"{agency} jail"):
        assert expected in call["text"], call["text"]
    assert call["pressed"] == ["4821"]

    headers = {"Authorization": f"Bearer {system.stack.secrets['OPERATOR_TOKEN']}"}
    deadline = time.monotonic() + 30
    while True:
        listed = await system.http.get(
            f"{system.stack.url('delivery')}/v1/notifications",
            params={"subscription_id": created["subscription_id"]},
            headers=headers,
        )
        release = [n for n in listed.json()["notifications"] if n["kind"] == "status_change"]
        if release and release[0]["outcome"] == "acknowledged":
            break
        assert time.monotonic() < deadline, listed.text
        await asyncio.sleep(0.2)
    assert release[0]["channel"] == "voice"
    assert number not in listed.text  # masked in the history
