"""Is a failure the world's fault or the message's? The one place that decides.

A *transient* failure is a dependency that is down or overloaded: PostgreSQL unreachable, restarting, refusing
connections or out of room; the Kafka broker unreachable or timing out; a provider's HTTP endpoint that cannot be
reached or does not answer in time. It says nothing about the message being handled, so it must never count
against it: the caller waits (capped, jittered backoff) and tries the same work again, for as long as it takes.

Anything else depends on the message itself (it cannot be decoded, it breaks a rule, a handler bug that repeats):
that one goes to the retry topic and, after its attempts, to the dead-letter topic.

The cause chain (``raise … from …`` and implicit context) is followed, so a transient error wrapped by a library or
by our own code is still seen for what it is.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import asyncpg
import httpx
from aiokafka import errors as kafka_errors

DATABASE = "database"
KAFKA = "kafka"
PROVIDER = "provider"
NETWORK = "network"

_TRANSIENT_SQLSTATE_CLASSES = frozenset(
    {
        "08",  # connection exception
        "53",  # insufficient resources: disk full, out of memory, too many connections
        "57",  # operator intervention: admin/crash shutdown, cannot connect now, query canceled
        "58",  # system error: I/O error
    }
)
_TRANSIENT_SQLSTATES = frozenset(
    {
        "40001",  # serialization failure: the same transaction succeeds when tried again
        "40P01",  # deadlock detected
        "25006",  # read-only transaction: a failover is promoting a standby
        "55P03",  # lock not available (lock_timeout)
    }
)
_REFUSING_CONNECTIONS = "not currently accepting connections"
"""SQLSTATE 55000 is a broad class; this is its message when ``ALLOW_CONNECTIONS false`` keeps clients out."""


class DependencyUnavailableError(Exception):
    """Raised by our own code to say "a dependency is down, wait": always transient, whatever it wraps."""

    def __init__(self, dependency: str, detail: str) -> None:
        super().__init__(f"{dependency} unavailable: {detail}")
        self.dependency = dependency


def _causes(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _database(error: BaseException) -> bool:
    if isinstance(error, asyncpg.PostgresError):
        sqlstate = str(getattr(error, "sqlstate", "") or "")
        return (
            sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES
            or sqlstate in _TRANSIENT_SQLSTATES
            or (sqlstate == "55000" and _REFUSING_CONNECTIONS in str(error))
        )
    # "connection is closed", "pool is closing", a connection lost mid-query: the link, not the query.
    return isinstance(error, asyncpg.InterfaceError) and any(
        word in str(error).lower() for word in ("connection", "pool")
    )


def _kafka(error: BaseException) -> bool:
    return isinstance(error, kafka_errors.KafkaError) and (
        bool(error.retriable) or isinstance(error, kafka_errors.KafkaTimeoutError)
    )


_CHECKS: tuple[tuple[str, Callable[[BaseException], bool]], ...] = (
    (DATABASE, _database),
    (KAFKA, _kafka),
    (PROVIDER, lambda error: isinstance(error, httpx.TransportError)),
    (NETWORK, lambda error: isinstance(error, ConnectionError | TimeoutError | socket.gaierror)),
)


TRANSIENT_ERROR_TYPES: tuple[type[Exception], ...] = (
    DependencyUnavailableError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    kafka_errors.KafkaError,
    httpx.TransportError,
    OSError,
)
"""The exception classes among which transient ones are found (an HTTP layer registers its 503 for these)."""


def _one(error: BaseException) -> str | None:
    if isinstance(error, DependencyUnavailableError):
        return error.dependency
    return next((dependency for dependency, check in _CHECKS if check(error)), None)


def transient_dependency(error: BaseException) -> str | None:
    """The dependency whose outage caused ``error`` (``database``, ``kafka``, ``provider``, ``network``), or None
    when the failure is the message's own."""
    for cause in _causes(error):
        dependency = _one(cause)
        if dependency is not None:
            return dependency
    return None


def is_transient(error: BaseException) -> bool:
    return transient_dependency(error) is not None
