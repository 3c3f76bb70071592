"""``make demo``: a short scripted story played against the running system, told step by step in plain words.

A jail (the demo agency) and two victims of one case, one reading English and one Spanish, each with SMS and email.
They subscribe and verify with the codes that arrive at the local sinks; the jail's system then pushes a booking
and a release, and each notice is shown as it reaches the sinks, with the time from the push. Only public APIs are
used (through :class:`SystemDriver`); contacts are printed masked, as everywhere else.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from devservers.driver import DriverError, SystemDriver, Victim, custody_record
from devservers.stack import DEMO_AGENCY, DEMO_AGENCY_PROFILE, Stack
from shared.crypto import mask_email, mask_phone

DEMO_AGENCY_FIELDS: dict[str, Any] = DEMO_AGENCY_PROFILE | {
    # Victims are told when the feed has been silent this long (off by default for real agencies).
    "silence_notice_after_minutes": 180,
}

Say = Callable[[str], None]


def _say(text: str) -> None:
    print(text, flush=True)


@dataclass(frozen=True)
class Contact:
    """One channel of one victim, as the story follows it at the sinks."""

    who: str
    language: str
    channel: str
    address: str

    @property
    def masked(self) -> str:
        return mask_phone(self.address) if self.channel == "sms" else mask_email(self.address)

    @property
    def label(self) -> str:
        return f"{self.who}'s {'SMS' if self.channel == 'sms' else 'email'} ({self.masked})"


@dataclass(frozen=True)
class Arrival:
    contact: Contact
    text: str
    """The SMS body, or the email's subject."""
    seconds: float
    """From the push (or the subscription) to the sink's receipt."""


@dataclass
class StoryResult:
    agency_id: str
    case: str
    codes: list[Arrival] = field(default_factory=list)
    booking: list[Arrival] = field(default_factory=list)
    release: list[Arrival] = field(default_factory=list)


def _text(channel: str, message: dict[str, Any]) -> str:
    return str(message.get("body") if channel == "sms" else message.get("subject") or "")


def _seconds_since(start: datetime, message: dict[str, Any]) -> float:
    """By the sink's own clock of receipt (same machine), not by when our polling noticed it."""
    try:
        received = datetime.fromisoformat(str(message["received_at"]))
    except (KeyError, ValueError):
        received = datetime.now(UTC)
    return max((received - start).total_seconds(), 0.0)


def _quote(text: str, width: int = 110) -> str:
    flat = " ".join(text.split())
    return f'"{flat[: width - 1]}…"' if len(flat) > width else f'"{flat}"'


class Story:
    """Follows the four contacts at the sinks, remembering how much of each inbox was already told."""

    def __init__(self, driver: SystemDriver, say: Say, within: float) -> None:
        self.driver = driver
        self.say = say
        self.within = within
        self.seen: dict[Contact, int] = {}

    async def next_arrivals(self, contacts: list[Contact], since: datetime) -> list[Arrival]:
        """Wait until each contact has received something new, telling each message as it comes; raises
        DriverError on a timeout."""
        arrivals: list[Arrival] = []
        pending = list(contacts)
        deadline = time.monotonic() + self.within
        while pending:
            for contact in list(pending):
                messages = await self.driver.received(contact.channel, contact.address)
                fresh = messages[self.seen.get(contact, 0) :]
                self.seen[contact] = len(messages)
                for message in fresh:
                    arrival = Arrival(contact, _text(contact.channel, message), _seconds_since(since, message))
                    arrivals.append(arrival)
                    self.say(f"   {arrival.seconds:5.1f} s  {contact.label}: {_quote(arrival.text)}")
                if fresh:
                    pending.remove(contact)
            if pending and time.monotonic() > deadline:
                missing = ", ".join(contact.label for contact in pending)
                raise DriverError(f"nothing arrived within {self.within:.0f} s for {missing}")
            if pending:
                await asyncio.sleep(0.2)
        return arrivals


async def wait_for_agency(driver: SystemDriver, agency_id: str, within: float = 30.0) -> None:
    """Wait until the subscription service knows ``agency_id``: a new agency reaches it through Kafka a moment
    after it is created. Asked of the public case lookup, whose rate limit is its own, so no subscribe attempt (at
    most 20 an hour from one address) is spent on an agency that has not arrived yet."""
    url = f"{driver.stack.url('subscription')}/v1/agencies/{agency_id}/cases/case_number/DEMO-PROBE/status"
    deadline = time.monotonic() + within
    while True:
        answer = await driver.http.get(url)
        if answer.status_code == 200 or (answer.status_code == 404 and "unknown agency" not in answer.text):
            return
        if time.monotonic() > deadline:
            raise DriverError(f"the subscription service does not know agency {agency_id} after {within:.0f} s")
        await asyncio.sleep(0.5)


async def play_story(
    stack: Stack,
    *,
    api_key: str | None = None,
    agency_id: str = DEMO_AGENCY,
    say: Say = _say,
    within: float = 60.0,
    settle: float = 2.0,
) -> StoryResult:
    """Play the story against ``stack``; returns what arrived. ``api_key``: a key of ``agency_id`` already made
    (``make run`` makes one); without it, the agency is created if need be and given a fresh key."""
    async with httpx.AsyncClient(timeout=30) as client:
        driver = SystemDriver(stack, client)
        story = Story(driver, say, within)
        token = secrets.token_hex(3)
        case = f"CR-DEMO-{token.upper()}"
        result = StoryResult(agency_id, case)

        say(f"1. The jail. {DEMO_AGENCY_FIELDS['name']} ({agency_id}) sends its custody changes to Custody Watch.")
        if api_key is None:
            api_key = await driver.create_agency(agency_id, **DEMO_AGENCY_FIELDS)
            say("   It has an API key for its feed (issued just now through the admin API).")

        # Numbers in the 555 range and example.org addresses: fictional, reachable only at the local sinks.
        base = int(token, 16) % 9_000
        alex = [
            Contact("Alex", "en", "sms", f"+1512555{base:04d}"),
            Contact("Alex", "en", "email", f"alex-{token}@example.org"),
        ]
        sofia = [
            Contact("Sofía", "es", "sms", f"+1512555{base + 1:04d}"),
            Contact("Sofía", "es", "email", f"sofia-{token}@example.org"),
        ]
        contacts = [*alex, *sofia]

        await wait_for_agency(driver, agency_id)
        say(f"2. Two victims of case {case} subscribe: Alex in English, Sofía in Spanish, each by SMS and email.")
        subscribed_at = datetime.now(UTC)
        victims: list[tuple[Victim, list[Contact]]] = []
        for person in (alex, sofia):
            victim = await driver.subscribe(
                agency_id, case, sms=person[0].address, email=person[1].address, language=person[0].language
            )
            victims.append((victim, person))
            say(f"   {person[0].who}: subscription {victim.subscription_id}, {person[0].masked} and {person[1].masked}")

        say("3. Their verification codes arrive (SMS at the SMS sink, email at the email sink):")
        result.codes = await story.next_arrivals(contacts, subscribed_at)
        for victim, person in victims:
            for contact in person:
                await driver.verify(victim, contact.channel)
        say("   They enter the codes: all four contacts are verified.")
        # The verified subscriptions reach the matcher through Kafka. A change pushed before they arrive is told as a
        # welcome with the current status instead of as the change itself: right, but the story reads better in order.
        await asyncio.sleep(settle)

        async def push(step: int, status_code: str, what: str) -> list[Arrival]:
            record = custody_record(f"demo-{token}-{step}", case, status_code, name="Jordan Demo")
            pushed_at = datetime.now(UTC)
            answer = await driver.push(agency_id, api_key or "", [record])
            outcome = (answer.get("results") or [{}])[0].get("result", "?")
            say(f"{step}. The jail pushes {what} ({status_code}) for case {case}: {outcome}. Notices arriving:")
            return await story.next_arrivals(contacts, pushed_at)

        result.booking = await push(4, "BOOKED", "a booking")
        result.release = await push(5, "RELEASED_BOND", "a release on bond")
        slowest = max(arrival.seconds for arrival in (*result.booking, *result.release))
        say(
            f"Done: {len(result.booking) + len(result.release)} notices reached the sinks, each in its reader's "
            f"language; the slowest {slowest:.1f} s after its push. (Urgent release notices repeat until acknowledged.)"
        )
        return result
