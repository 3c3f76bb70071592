"""A scheduled release through public APIs, matching's clock moved by its clock file: announced, reminded 14 days
and 1 day before, matching killed -9 between the two (none lost, none twice at the SMS sink), the release
happening first cancels the morning-of reminder."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devservers.driver import SystemDriver, custody_record
from devservers.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def set_clock(path: Path, moment: datetime) -> None:
    """Written whole, then renamed: matching never reads half a time."""
    draft = path.with_suffix(".draft")
    draft.write_text(moment.isoformat())
    draft.replace(path)


@contextmanager
def matching_on_a_clock(stack: Stack, path: Path) -> Iterator[None]:
    """Matching restarted reading its clock from ``path``; back on the system clock afterwards."""
    settings = {"MATCHING_CLOCK_FILE": str(path), "MATCHING_REMINDER_INTERVAL_SECONDS": "0.2"}
    stack.stop_service("matching")
    stack.env |= settings
    stack.start_service("matching")
    stack.wait_ready("matching")
    try:
        yield
    finally:
        if stack.processes["matching"].poll() is None:
            stack.stop_service("matching")
        for name in settings:
            stack.env.pop(name, None)
        stack.start_service("matching")
        stack.wait_ready("matching")


async def test_a_scheduled_release_is_announced_reminded_through_a_kill_and_cancelled(
    system: SystemDriver, tmp_path: Path
) -> None:
    token = uuid.uuid4().hex[:6]
    agency, case = f"rem-{token}", f"CR-{token}"
    key = await system.create_agency(agency)
    sms = f"+1512558{int(token, 16) % 10000:04d}"
    victim = await system.subscribe(agency, case, sms=sms)
    await system.verify(victim, "sms")
    clock = tmp_path / "matching-clock"
    start = datetime.now(UTC)
    set_clock(clock, start)
    release_at = (start + timedelta(days=20)).replace(microsecond=0)

    def bodies(messages: list[dict[str, object]]) -> list[str]:
        return [str(message.get("body")) for message in messages]

    with matching_on_a_clock(system.stack, clock):
        await system.wait_for_matching(agency, reachable_contacts=1)
        record = custody_record(f"r1-{token}", case, "BOOKED", scheduled_release_at=release_at.isoformat())
        await system.push(agency, key, [record])
        announced = bodies(await system.wait_for("sms", sms, lambda m: len(m) >= 3))
        assert any("is scheduled to be RELEASED" in body and "Reminder" not in body for body in announced), announced

        set_clock(clock, release_at - timedelta(days=14) + timedelta(minutes=1))
        first = bodies(await system.wait_for("sms", sms, lambda m: len(m) >= 4))[3]
        assert first.startswith(f"Custody Watch - {agency} jail: Reminder:"), first

        system.stack.kill_service("matching")  # SIGKILL: reminders live in its database, not its memory
        set_clock(clock, release_at - timedelta(days=1) + timedelta(minutes=1))
        system.stack.start_service("matching")
        system.stack.wait_ready("matching")
        second = bodies(await system.wait_for("sms", sms, lambda m: len(m) >= 5))[4]
        assert "Reminder:" in second

        await system.push(agency, key, [custody_record(f"r2-{token}", case, "RELEASED")])
        released = bodies(await system.wait_for("sms", sms, lambda m: len(m) >= 6))[5]
        assert "was RELEASED" in released
        set_clock(clock, release_at + timedelta(hours=1))  # past the morning of: that reminder was cancelled
        await asyncio.sleep(3)
        assert len(await system.received("sms", sms)) == 6
