"""Group commit of the bookkeeping: hand-off results and provider receipts buffered for a few milliseconds and
written in one transaction per batch, with the batch's outbox events in one insert.

Each caller waits until its batch committed, so durability is unchanged: a status callback answered 2xx is stored.
A failed batch is rolled back and each of its jobs is then tried alone in its own transaction, so one bad job (or a
deadlock with another replica's batch) fails only itself; a job that fails alone fails its caller (a callback
answers 503 and the provider retries; a hand-off stays in flight and its lease brings it back). Jobs run in the
order of their keys (the attempt id), so two batches lock rows in the same order. Up to ``writers`` batches are
written at once, each on its own connection: a batch's jobs wait on their round trips one after another, so one
writer at a time capped the whole process's bookkeeping (the bench's receipts lagged 16 s at 300 SMS/s with
delivery at 0.6 of a core). Two batches touching one row wait for each other as two replicas' batches do.
The jobs that lock the attempt their key names say so; the batch's ``scope`` (the store's ``bookkeeping_batch``)
locks all of those in one query first and holds the jobs' updates to write them set-based at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg

from shared.db import Connection
from shared.envelope import CloudEvent, encode
from shared.outbox import OutboxRow, enqueue, enqueue_rows

log = logging.getLogger(__name__)

Job = Callable[[Connection], Awaitable[Any]]
Result = TypeVar("Result")
BatchScope = Callable[[Connection, Sequence[str]], contextlib.AbstractAsyncContextManager[None]]

_pending_events: ContextVar[list[OutboxRow] | None] = ContextVar("pending_events", default=None)


async def add_event(connection: Connection, topic: str, key: str, event: CloudEvent[Any]) -> None:
    """Add an event to the outbox: to the batch being written (one insert for all of them), else at once."""
    pending = _pending_events.get()
    if pending is None:
        await enqueue(connection, topic, key, event)
    else:
        pending.append(OutboxRow(topic, key, event.id, encode(event)))


@contextlib.asynccontextmanager
async def batched_events(connection: Connection) -> AsyncIterator[None]:
    """Inside, :func:`add_event` collects; on leaving without an error, everything collected is inserted at once."""
    rows: list[OutboxRow] = []
    token = _pending_events.set(rows)
    try:
        yield
    finally:
        _pending_events.reset(token)
    await enqueue_rows(connection, rows)


class BookkeepingUnavailableError(Exception):
    """The job's transaction failed (the database?); nothing of it was stored."""


@dataclass
class _Waiter:
    key: str
    job: Job
    locks_key: bool
    done: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class GroupCommit:
    """Runs jobs in batches, one transaction each; while jobs keep coming it keeps its connection (a connection
    returned to the pool costs a reset round trip), and returns it after ``IDLE_SECONDS`` without work."""

    IDLE_SECONDS = 0.1

    def __init__(
        self,
        pool: Callable[[], asyncpg.Pool],
        *,
        flush_seconds: float,
        max_batch: int,
        writers: int = 1,
        scope: BatchScope | None = None,
    ) -> None:
        """``pool`` is called at the first flush (the pool exists only once the service started). ``scope`` is
        entered in each batch's transaction around its jobs, with the keys of the jobs that lock theirs."""
        self._pool = pool
        self._scope = scope
        self._flush_seconds = flush_seconds
        self._max_batch = max_batch
        self._writers = writers
        self._queue: list[_Waiter] = []
        self._flushers: set[asyncio.Task[None]] = set()
        self._collecting = False
        self._full = asyncio.Event()
        self._arrived = asyncio.Event()

    async def run(self, key: str, job: Callable[[Connection], Awaitable[Result]], *, locks_key: bool = False) -> Result:
        """Run ``job`` in the next batch's transaction and return its result once that transaction committed;
        ``locks_key``: the job locks the attempt ``key`` names (so the batch locks it ahead, with the others)."""
        waiter = _Waiter(key, job, locks_key)
        self._queue.append(waiter)
        self._arrived.set()
        if len(self._queue) >= self._max_batch:
            self._full.set()
        self._start_writer()
        result: Result = await asyncio.shield(waiter.done)
        return result

    def _start_writer(self) -> None:
        """A writer to gather the queued jobs, unless one is gathering already or all are busy writing."""
        if self._queue and not self._collecting and len(self._flushers) < self._writers:
            self._flushers.add(asyncio.create_task(self._flush()))

    async def _flush(self) -> None:
        """Gather a batch, let another writer gather the next while this one writes, and go on while work comes."""
        try:
            async with self._pool().acquire() as connection:
                while True:
                    batch = await self._next_batch()
                    if not batch:
                        return
                    self._start_writer()
                    if not await self._write(connection, batch) or not await self._more_work():
                        return
        except Exception as error:  # noqa: BLE001 - no connection (the database?): every waiter is told
            if not self._collecting:
                batch, self._queue = self._queue, []
                for waiter in batch:
                    self._fail(waiter, error)
        finally:
            self._flushers.discard(asyncio.current_task())
            self._start_writer()  # jobs that came while this writer wrote

    async def _next_batch(self) -> list[_Waiter]:
        self._collecting = True
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), timeout=self._flush_seconds)
        finally:
            self._collecting = False
        self._full.clear()
        batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
        if len(self._queue) >= self._max_batch:
            self._full.set()
        return sorted(batch, key=lambda waiter: waiter.key)

    async def _more_work(self) -> bool:
        """Whether this writer should gather again: work is queued (or comes soon) and nobody else gathers it."""
        if not self._queue:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout=self.IDLE_SECONDS)
        return bool(self._queue) and not self._collecting

    async def _write(self, connection: Connection, batch: list[_Waiter]) -> bool:
        """Write a batch; False if it failed (its connection is then given back, as it may be broken)."""
        try:
            results = await self._transaction(connection, batch)
        except Exception as error:  # noqa: BLE001 - whatever failed, its waiters are told
            if len(batch) == 1:
                self._fail(batch[0], error)
                return False
            log.warning("a bookkeeping batch of %d failed (%s); each is tried alone", len(batch), type(error).__name__)
            for waiter in batch:
                try:
                    async with self._pool().acquire() as alone_on:
                        (result,) = await self._transaction(alone_on, [waiter])
                except Exception as alone:  # noqa: BLE001 - whatever failed, its waiter is told
                    self._fail(waiter, alone)
                else:
                    waiter.done.set_result(result)
            return False
        for waiter, result in zip(batch, results, strict=True):
            waiter.done.set_result(result)
        return True

    async def _transaction(self, connection: Connection, batch: list[_Waiter]) -> list[Any]:
        locked_keys = [waiter.key for waiter in batch if waiter.locks_key]
        scope = self._scope(connection, locked_keys) if self._scope else contextlib.nullcontext()
        async with connection.transaction(), batched_events(connection), scope:
            return [await waiter.job(connection) for waiter in batch]

    @staticmethod
    def _fail(waiter: _Waiter, error: Exception) -> None:
        log.error("bookkeeping of %s failed: %s", waiter.key, type(error).__name__, exc_info=error)
        failure = BookkeepingUnavailableError(f"bookkeeping failed: {type(error).__name__}")
        waiter.done.set_exception(failure)
