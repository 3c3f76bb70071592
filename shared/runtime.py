"""What every service holds while it runs: its pool, its producer, its background tasks, and its health.

A service's ``app.py`` builds one :class:`ServiceRuntime`, registers its consumers and loops with
:meth:`ServiceRuntime.spawn`, and hands it to :func:`shared.http.create_service_app`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
from aiokafka import AIOKafkaProducer

from shared.backoff import Backoff, until_available
from shared.db import apply_migrations, create_pool
from shared.failures import transient_dependency
from shared.kafka import ConsumerRunner, create_producer
from shared.outbox import OutboxRelay
from shared.settings import ServiceSettings
from shared.topics import TopicSpec, consumer_group_topics, ensure_topics

log = logging.getLogger(__name__)

RESTART_BACKOFF = Backoff(initial=0.5, maximum=10.0)
BROKER_CHECK_SECONDS = 3.0


class ServiceRuntime:
    def __init__(
        self,
        settings: ServiceSettings,
        *,
        name: str,
        migrations: Sequence[str],
        topics: Sequence[TopicSpec],
        consumer_groups: Sequence[str] = (),
        outbox: bool = True,
    ) -> None:
        self.settings = settings
        self.name = name
        self._migrations = ["shared", *migrations]
        self._topics = list(topics)
        for group in consumer_groups:
            self._topics += consumer_group_topics(group)
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

    def add_consumer(self, runner: ConsumerRunner) -> None:
        self.consumers.append(runner)
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
        self._producer = await create_producer(settings.kafka)
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
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

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
