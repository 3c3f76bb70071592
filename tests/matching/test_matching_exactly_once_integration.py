"""Matching as real processes: killed -9 mid-batch, or rebalanced between two instances, each notification request
is committed exactly once, with exactly the ids a clean run produces."""

from __future__ import annotations

import asyncio
import collections
import re
import time
from pathlib import Path

import asyncpg
import pytest

from services.matching import domain
from services.matching.settings import MatchingSettings
from shared.events import NotificationRequested, SubjectIdentifier
from shared.settings import KafkaSettings
from shared.vocabulary import Channel, CustodyStatus, IdentifierKind
from tests.apps import ServiceProcess
from tests.matching.factories import change, contact, custody_message, subscription, subscription_message
from tests.matching.helpers import (
    matching_settings,
    process_env,
    publish_custody,
    publish_subscriptions,
    read_notices,
    wait_until,
)

pytestmark = pytest.mark.integration

SUBJECTS = 20
SUBSCRIBERS_PER_SUBJECT = 3
STATUSES = [
    CustodyStatus.IN_CUSTODY,
    CustodyStatus.TRANSFERRED,
    CustodyStatus.RELEASED,
    CustodyStatus.RETURNED_TO_CUSTODY,
]


def booking(subject: int) -> SubjectIdentifier:
    return SubjectIdentifier(kind=IdentifierKind.BOOKING_NUMBER, value=f"BK-{subject}")


def subscriptions_messages() -> tuple[list[tuple[bytes, bytes]], dict[int, list[str]]]:
    messages: list[tuple[bytes, bytes]] = []
    by_subject: dict[int, list[str]] = {}
    for subject in range(SUBJECTS):
        ids = [f"sub-{subject}-{n}" for n in range(SUBSCRIBERS_PER_SUBJECT)]
        by_subject[subject] = ids
        messages += [
            subscription_message(subscription(sid, identifier=booking(subject), contacts=[contact(Channel.SMS)]))
            for sid in ids
        ]
    return messages, by_subject


def custody_messages(
    first: int, count: int, by_subject: dict[int, list[str]]
) -> tuple[list[tuple[bytes, bytes]], set[str]]:
    """``count`` changes spread over the subjects, and the notification ids a clean run must produce for them."""
    messages: list[tuple[bytes, bytes]] = []
    expected: set[str] = set()
    for n in range(first, first + count):
        subject = n % SUBJECTS
        key, value, event_id = custody_message(
            change(f"s-{subject}", status=STATUSES[n % len(STATUSES)], identifiers=[booking(subject)], sequence=n)
        )
        messages.append((key, value))
        expected |= {domain.status_change_notification_id(event_id, sid, Channel.SMS) for sid in by_subject[subject]}
    return messages, expected


async def handled_count(pool: asyncpg.Pool) -> int:
    try:
        return int(await pool.fetchval("SELECT count(*) FROM handled_events"))
    except asyncpg.UndefinedTableError:
        return 0


async def wait_handled(pool: asyncpg.Pool, n: int, timeout: float = 60) -> None:
    async def reached() -> bool:
        return await handled_count(pool) >= n

    await wait_until(reached, timeout=timeout, what=f"{n} handled events")


def matching_process(settings: MatchingSettings, tmp_path: Path) -> ServiceProcess:
    return ServiceProcess(
        "services.matching", process_env(settings), port_variable="MATCHING_HTTP_PORT", log_dir=tmp_path
    )


async def read_all_notices(
    kafka: KafkaSettings, expected: set[str], pool: asyncpg.Pool, processes: list[ServiceProcess]
) -> list[NotificationRequested]:
    """All expected notification requests; on failure, says what the database and the processes' logs knew."""
    try:
        return await read_notices(kafka, len(expected), settle=3)
    except AssertionError as error:
        recorded = await pool.fetchval("SELECT count(*) FROM notification_requests")
        problems = [
            line[:400]
            for process in processes
            for line in process.log_path.read_text().splitlines()
            if '"WARNING"' in line or '"ERROR"' in line
        ]
        raise AssertionError(f"{error}; recorded in the database: {recorded}; log problems: {problems[-20:]}") from None


def assert_exactly(notices: list[NotificationRequested], expected: set[str]) -> None:
    ids = collections.Counter(n.notification_id for n in notices)
    duplicated = {i: c for i, c in ids.items() if c > 1}
    assert not duplicated, f"{len(duplicated)} notification ids committed more than once"
    assert set(ids) == expected


async def test_killed_mid_batch_and_restarted_yields_each_notification_exactly_once(
    database_url: str, pool: asyncpg.Pool, kafka_settings: KafkaSettings, unique: str, tmp_path: Path
) -> None:
    settings = matching_settings(database_url, kafka_settings, unique)
    subscriptions, by_subject = subscriptions_messages()
    changes, expected = custody_messages(0, 1_500, by_subject)
    total = len(subscriptions) + len(changes)

    first = matching_process(settings, tmp_path)
    first.start()
    try:
        await first.wait_ready()
        await publish_subscriptions(kafka_settings, subscriptions)
        await wait_handled(pool, len(subscriptions))
        # Stop, so the changes pile up and the next run takes them in large batches.
        first.stop()
        await publish_custody(kafka_settings, changes)

        crashing = matching_process(settings, tmp_path)
        crashing.start()
        await crashing.wait_ready()
        # A batch's events commit in the database together, then its notices are sent and its Kafka transaction
        # commits: kill the moment the first batch shows in the database, while its Kafka transaction is open.
        deadline = time.monotonic() + 60
        while await handled_count(pool) <= len(subscriptions):
            assert time.monotonic() < deadline, "the crashing process handled nothing"
            await asyncio.sleep(0.002)
        crashing.kill()
        at_kill = await handled_count(pool)
        assert at_kill < total, "the process finished before it was killed; nothing was tested"

        restarted = matching_process(settings, tmp_path)  # the same instance id: it fences its dead predecessor
        restarted.start()
        try:
            await restarted.wait_ready()
            notices = await read_all_notices(kafka_settings, expected, pool, [crashing, restarted])
            assert_exactly(notices, expected)
            assert await handled_count(pool) == total
            # The killed run had applied events whose transaction never committed: the restart re-sent them.
            assert "read again after an aborted transaction" in restarted.log_path.read_text()
        finally:
            restarted.stop()
    finally:
        first.stop()


async def test_two_processes_through_a_rebalance_yield_each_notification_exactly_once(
    database_url: str, pool: asyncpg.Pool, kafka_settings: KafkaSettings, unique: str, tmp_path: Path
) -> None:
    subscriptions, by_subject = subscriptions_messages()
    phases = [custody_messages(start, 200, by_subject) for start in (0, 200, 400)]
    expected = set().union(*(ids for _, ids in phases))

    first = matching_process(matching_settings(database_url, kafka_settings, unique, instance="a"), tmp_path)
    second = matching_process(matching_settings(database_url, kafka_settings, unique, instance="b"), tmp_path)
    first.start()
    try:
        await first.wait_ready()
        await publish_subscriptions(kafka_settings, subscriptions)
        await wait_handled(pool, len(subscriptions))
        await publish_custody(kafka_settings, phases[0][0])
        await wait_handled(pool, len(subscriptions) + 50)

        second.start()  # joins the group while the first is mid-stream: a rebalance
        await publish_custody(kafka_settings, phases[1][0])
        await second.wait_ready()
        await wait_handled(pool, len(subscriptions) + 250)

        first.stop()  # leaves the group: the second takes every partition
        await publish_custody(kafka_settings, phases[2][0])
        notices = await read_all_notices(kafka_settings, expected, pool, [first, second])
        assert_exactly(notices, expected)
        assert await handled_count(pool) == len(subscriptions) + 600
        assert re.search(r"assigned [1-9]\d* partitions", second.log_path.read_text()), second.log_tail()
        assert "revoked" in first.log_path.read_text()
    finally:
        first.stop()
        second.stop()
