"""What every service holds while it runs: its pool, its producer, its background tasks, and its health.

A service's ``app.py`` builds one :class:`ServiceRuntime` from what its ``consumers.py`` declares
(``CONSUMER_GROUP``, ``CONSUMED_TOPICS``, ``PRODUCED_TOPICS``), registers its consumers and loops with
:meth:`ServiceRuntime.add_consumer` and :meth:`ServiceRuntime.spawn`, and hands it to
:func:`shared.http.create_service_app`.

The declaration is enforced, so it cannot drift from what the service does: a consumer that reads other topics than
``consumed_topics`` is refused when it is registered, and the service's producers refuse to write to a topic outside
``produced_topics`` (and its group's retry and dead-letter topics). ``tests/test_wiring.py`` checks the declarations
against :mod:`shared.topics`, and so against ``contracts/asyncapi.json``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from shared.backoff import Backoff, until_available
from shared.db import apply_migrations, create_pool
from shared.failures import transient_dependency
from shared.kafka.consumer import ConsumerRunner
from shared.kafka.producer import EventProducer, create_producer
from shared.outbox import OutboxRelay
from shared.settings import ServiceSettings
from shared.topics import TopicSpec, consumer_group_topics, dead_letter_topic, ensure_topics, retry_topic

log = logging.getLogger(__name__)

RESTART_BACKOFF = Backoff(initial=0.5, maximum=10.0)
BROKER_CHECK_SECONDS = 3.0
STOP_SECONDS = 15.0


def awaiting(task: asyncio.Task[None]) -> str:
    """Where a task waits, outermost first: ``Task.get_stack`` shows only the outermost coroutine's frame."""
    places = []
    step: Any = task.get_coro()
    while step is not None:
        if isinstance(step, asyncio.Task):
            step = step.get_coro()
        frame = getattr(step, "cr_frame", None) or getattr(step, "gi_frame", None)
        if frame is not None:
            places.append(f"{frame.f_code.co_qualname} ({frame.f_code.co_filename}:{frame.f_lineno})")
        step = getattr(step, "cr_await", None) or getattr(step, "gi_yieldfrom", None)
    return " -> ".join(places) or "an unknown place"


class WiringError(RuntimeError):
    """A service runs a consumer its declaration does not list (see the module's docstring)."""


class ServiceRuntime:
    def __init__(
        self,
        settings: ServiceSettings,
        *,
        name: str,
        migrations: Sequence[str],
        consumer_group: str | None = None,
        consumed_topics: Sequence[TopicSpec] = (),
        produced_topics: Sequence[TopicSpec] = (),
        republished_topics: Sequence[TopicSpec] = (),
        outbox: bool = True,
    ) -> None:
        """``consumer_group`` (None for a service that consumes nothing), ``consumed_topics`` and
        ``produced_topics`` are the service's declaration, enforced. ``republished_topics`` are those it may also
        write other services' records to, unchanged (ops replays dead letters): not events of its own, so neither
        in ``produced_topics`` nor in the contracts. The consumed and produced ones (and the group's retry and
        dead-letter topics) are created at start if missing."""
        if consumed_topics and consumer_group is None:
            raise WiringError(f"{name}: consumed topics without a consumer group")
        self.settings = settings
        self.name = name
        self.consumer_group = consumer_group
        self.consumed_topics = tuple(consumed_topics)
        self.produced_topics = tuple(produced_topics)
        self.republished_topics = tuple(republished_topics)
        self._migrations = ["shared", *migrations]
        self._topics = list({spec.name: spec for spec in [*consumed_topics, *produced_topics]}.values())
        if consumer_group is not None:
            self._topics += consumer_group_topics(consumer_group)
        self._outbox = outbox
        self._pool: asyncpg.Pool | None = None
        self._producer: AIOKafkaProducer | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._pending: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        self.consumers: list[ConsumerRunner] = []

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError(f"{self.name}: database pool used before start()")
        return self._pool

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError(f"{self.name}: Kafka producer used before start()")
        return self._producer

    def spawn(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run ``loop`` in the background for the life of the service, restarting it if it crashes."""
        if self._pool is None:
            self._pending.append((name, loop))
        else:
            self._tasks[name] = asyncio.create_task(self._supervise(name, loop), name=name)

    def every(self, name: str, seconds: float, job: Callable[[], Awaitable[object]]) -> None:
        """Run ``job`` now and then every ``seconds`` for the life of the service (supervised like ``spawn``)."""

        async def periodically() -> None:
            while True:
                await job()
                await asyncio.sleep(seconds)

        self.spawn(name, periodically)

    @property
    def writable_topics(self) -> list[str]:
        """The base names this service's producers may write to."""
        names = [spec.name for spec in [*self.produced_topics, *self.republished_topics]]
        if self.consumer_group is not None:
            names += [retry_topic(self.consumer_group), dead_letter_topic(self.consumer_group)]
        return list(dict.fromkeys(names))

    async def create_producer(self, transactional_id: str | None = None) -> EventProducer:
        """A producer limited to :attr:`writable_topics` (for a service that needs one of its own, transactional)."""
        return await create_producer(
            self.settings.kafka, transactional_id=transactional_id, allowed_topics=self.writable_topics
        )

    def register_consumer(self, runner: ConsumerRunner) -> None:
        """Show ``runner`` in readiness (in place of an earlier runner of its group), once it matches the declaration.

        Raises :class:`WiringError` if it reads other topics than the service declares, or for another group."""
        declared = sorted(spec.name for spec in self.consumed_topics)
        reads = sorted(spec.name for spec in runner.consumed_topics)
        if runner.group_id != self.consumer_group or reads != declared:
            raise WiringError(
                f"{self.name}: consumer {runner.group_id} reads {reads}, but the service declares group "
                f"{self.consumer_group} reading {declared}"
            )
        self.consumers[:] = [known for known in self.consumers if known.group_id != runner.group_id]
        self.consumers.append(runner)

    def add_consumer(self, runner: ConsumerRunner) -> None:
        self.register_consumer(runner)
        self.spawn(f"consumer:{runner.group_id}", runner.run)

    async def _supervise(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        crashes = 0
        while True:
            try:
                await loop()
                return
            except asyncio.CancelledError:
                # Only a cancellation of this task means "stop". A library can leak one nobody asked for (aiokafka's
                # consumer.stop() does while a fetch sleeps in its retry back-off): that is a crash like any other.
                current = asyncio.current_task()
                if current is None or current.cancelling():
                    raise
                crashes += 1
                delay = RESTART_BACKOFF.delay(crashes)
                log.error("%s ended with a stray CancelledError; restarting in %.1f s", name, delay)
            except Exception as error:
                crashes += 1
                delay = RESTART_BACKOFF.delay(crashes)
                dependency = transient_dependency(error)
                if dependency is not None:  # an outage, not a bug: no stack trace every few seconds
                    log.warning(
                        "%s stopped: %s unavailable (%s); restarting in %.1f s",
                        name,
                        dependency,
                        type(error).__name__,
                        delay,
                    )
                else:
                    log.exception("%s crashed; restarting in %.1f s", name, delay)
            await asyncio.sleep(delay)

    async def start(self) -> None:
        settings = self.settings
        pool = await self._connect_database()
        await apply_migrations(pool, self._migrations)
        await ensure_topics(settings.kafka, self._topics)
        self._producer = await self.create_producer()
        self._pool = pool
        if self._outbox:
            relay = OutboxRelay(pool, self._producer, service=self.name)
            self.spawn("outbox-relay", relay.run)
        for name, loop in self._pending:
            self.spawn(name, loop)
        self._pending.clear()

    async def _connect_database(self) -> asyncpg.Pool:
        """The pool, once the database answers, however long that takes (a wrong password fails at once)."""
        settings = self.settings
        return await until_available(
            lambda: create_pool(
                settings.database_url, min_size=settings.database_pool_min, max_size=settings.database_pool_max
            ),
            what=f"{self.name} start",
            backoff=Backoff(initial=0.5, maximum=5.0),
        )

    async def stop(self) -> None:
        """Stop the loops, the producer and the pool, each within :data:`STOP_SECONDS`. What does not end in time
        is logged with where it waits and abandoned (the pool's connections are terminated): a rolling restart or
        a test must never hang on a client library that waits forever while it closes."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=STOP_SECONDS)
            for task in stuck:
                log.error(
                    "%s: %s did not stop within %.0f s; abandoned in %s",
                    self.name,
                    task.get_name(),
                    STOP_SECONDS,
                    awaiting(task),
                )
        if self._producer is not None:
            producer, self._producer = self._producer, None
            try:
                await asyncio.wait_for(producer.stop(), timeout=STOP_SECONDS)
            except TimeoutError:
                log.error("%s: the Kafka producer did not close within %.0f s", self.name, STOP_SECONDS)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), timeout=STOP_SECONDS)
            except TimeoutError:
                log.error("%s: database connections still in use after %.0f s; terminated", self.name, STOP_SECONDS)
                pool.terminate()

    async def _broker_state(self) -> str:
        if self._producer is None:
            return "not started"
        try:
            await asyncio.wait_for(self._producer.client.fetch_all_metadata(), timeout=BROKER_CHECK_SECONDS)
        except Exception as error:  # noqa: BLE001 - readiness reports, never raises
            return f"unavailable: {type(error).__name__}"
        return "ok"

    async def readiness(self) -> dict[str, str]:
        """Each dependency's state; the service is ready when every value is ``ok``."""
        checks: dict[str, str] = {}
        try:
            await self.pool.fetchval("SELECT 1")
            checks["database"] = "ok"
        except Exception as error:  # noqa: BLE001 - readiness reports, never raises
            checks["database"] = f"unavailable: {type(error).__name__}"
        checks["kafka"] = await self._broker_state()
        for runner in self.consumers:
            state = "ok" if runner.ready.is_set() else "not ready"
            checks[f"consumer:{runner.group_id}"] = f"degraded: {runner.degraded}" if runner.degraded else state
        for name, task in self._tasks.items():
            if task.done():
                checks[name] = "stopped"
        return checks
