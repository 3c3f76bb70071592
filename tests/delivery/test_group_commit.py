"""Group commit: jobs that arrive together share one transaction and one outbox insert, each caller waits for the
commit, and a failing job fails only itself."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from services.delivery.flows.group_commit import BookkeepingUnavailableError, GroupCommit, add_event
from shared.envelope import new_event
from shared.events import ContactPointDisabled
from shared.vocabulary import Channel

NOW = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)


class FakeConnection:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        self.log.append("begin")
        try:
            yield
        except BaseException:
            self.log.append("rollback")
            raise
        self.log.append("commit")

    def transaction(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self._transaction()

    async def execute(self, query: str, *arguments: Any) -> None:
        self.log.append(f"outbox {len(arguments[0])}" if "INSERT INTO outbox" in query else query)


class FakePool:
    def __init__(self) -> None:
        self.log: list[str] = []
        self.acquired = 0

    @contextlib.asynccontextmanager
    async def _acquire(self) -> AsyncIterator[FakeConnection]:
        self.acquired += 1
        yield FakeConnection(self.log)

    def acquire(self) -> contextlib.AbstractAsyncContextManager[FakeConnection]:
        return self._acquire()


def event(number: int) -> Any:
    data = ContactPointDisabled(subscription_id=f"s{number}", channel=Channel.SMS, reason="opted_out", at=NOW)
    return new_event(data, source="test", subject=f"s{number}", event_id=f"e{number}")


def group_commit(pool: FakePool, max_batch: int = 100) -> GroupCommit:
    return GroupCommit(lambda: pool, flush_seconds=0.01, max_batch=max_batch)  # type: ignore[arg-type,return-value]


async def test_jobs_arriving_together_share_one_transaction_and_one_outbox_insert() -> None:
    pool = FakePool()
    commit = group_commit(pool)

    def job(number: int) -> Any:
        async def write(connection: Any) -> int:
            await connection.execute(f"update {number}")
            await add_event(connection, "topic", f"k{number}", event(number))
            return number

        return write

    results = await asyncio.gather(*(commit.run(f"a{number}", job(number)) for number in (3, 1, 2)))

    assert results == [3, 1, 2]
    assert pool.log == ["begin", "update 1", "update 2", "update 3", "outbox 3", "commit"]  # in key order


async def test_a_failing_job_fails_only_itself() -> None:
    pool = FakePool()
    commit = group_commit(pool)

    async def fine(connection: Any) -> str:
        await connection.execute("fine")
        return "stored"

    async def broken(connection: Any) -> str:
        raise RuntimeError("boom")

    results = await asyncio.gather(
        commit.run("a1", fine), commit.run("a2", broken), commit.run("a3", fine), return_exceptions=True
    )

    assert results[0] == "stored"
    assert results[2] == "stored"
    assert isinstance(results[1], BookkeepingUnavailableError)
    assert pool.log[:3] == ["begin", "fine", "rollback"]  # the batch, rolled back; then each alone
    assert pool.log[3:] == ["begin", "fine", "commit", "begin", "rollback", "begin", "fine", "commit"]


async def test_batches_are_capped_and_the_connection_is_kept_while_work_comes() -> None:
    pool = FakePool()
    commit = group_commit(pool, max_batch=2)

    async def write(connection: Any) -> None:
        await connection.execute("write")

    await asyncio.gather(*(commit.run(f"a{number}", write) for number in range(5)))

    assert pool.log.count("begin") == 3
    assert pool.acquired == 1


async def test_no_connection_fails_every_waiter() -> None:
    class DownPool(FakePool):
        def acquire(self) -> contextlib.AbstractAsyncContextManager[FakeConnection]:
            raise OSError("database down")

    commit = group_commit(DownPool())

    async def write(connection: Any) -> None:
        raise AssertionError("never run")

    with pytest.raises(BookkeepingUnavailableError):
        await commit.run("a1", write)


async def test_up_to_writers_batches_are_written_at_once_and_the_rest_wait() -> None:
    pool = FakePool()
    commit = GroupCommit(lambda: pool, flush_seconds=0.001, max_batch=1, writers=2)  # type: ignore[arg-type,return-value]
    inside = 0
    most = 0
    release = asyncio.Event()

    async def slow(_: Any) -> None:
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        await release.wait()
        inside -= 1

    waiting = [asyncio.create_task(commit.run(f"a{number}", slow)) for number in range(5)]
    await asyncio.sleep(0.1)
    assert inside == 2, "two batches in their transactions at once, the others queued"
    release.set()
    await asyncio.gather(*waiting)
    assert most == 2
    assert pool.log.count("commit") == 5
    assert pool.acquired <= 3, "a writer keeps its connection while work comes"
