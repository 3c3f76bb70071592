"""Which failures wait (a dependency is down) and which go to the retry topic (the message's own fault)."""

from __future__ import annotations

import asyncpg
import httpx
import pytest
from aiokafka import errors as kafka_errors

from shared.backoff import Backoff
from shared.failures import DependencyUnavailableError, is_transient, transient_dependency


def postgres_error(error_type: type[asyncpg.PostgresError], message: str = "boom") -> asyncpg.PostgresError:
    return error_type(message)


@pytest.mark.parametrize(
    ("error", "dependency"),
    [
        (ConnectionRefusedError(111, "Connection refused"), "network"),
        (TimeoutError(), "network"),
        (postgres_error(asyncpg.exceptions.CannotConnectNowError), "database"),
        (postgres_error(asyncpg.exceptions.AdminShutdownError), "database"),
        (postgres_error(asyncpg.exceptions.ConnectionDoesNotExistError), "database"),
        (postgres_error(asyncpg.exceptions.TooManyConnectionsError), "database"),
        (postgres_error(asyncpg.exceptions.DiskFullError), "database"),
        (postgres_error(asyncpg.exceptions.SerializationError), "database"),
        (postgres_error(asyncpg.exceptions.DeadlockDetectedError), "database"),
        (postgres_error(asyncpg.exceptions.ReadOnlySQLTransactionError), "database"),
        (
            postgres_error(
                asyncpg.exceptions.ObjectNotInPrerequisiteStateError,
                'database "matching" is not currently accepting connections',
            ),
            "database",
        ),
        (asyncpg.InterfaceError("connection is closed"), "database"),
        (asyncpg.InterfaceError("pool is closing"), "database"),
        (kafka_errors.KafkaConnectionError("Unable to bootstrap"), "kafka"),
        (kafka_errors.KafkaTimeoutError(), "kafka"),
        (kafka_errors.NotLeaderForPartitionError(), "kafka"),
        (httpx.ConnectError("refused"), "provider"),
        (httpx.ReadTimeout("slow"), "provider"),
        (DependencyUnavailableError("provider", "circuit open"), "provider"),
    ],
)
def test_outages_are_transient(error: Exception, dependency: str) -> None:
    assert transient_dependency(error) == dependency


@pytest.mark.parametrize(
    "error",
    [
        ValueError("bad record"),
        KeyError("missing"),
        postgres_error(asyncpg.exceptions.UniqueViolationError),
        postgres_error(asyncpg.exceptions.CheckViolationError),
        postgres_error(asyncpg.exceptions.UndefinedTableError),
        postgres_error(asyncpg.exceptions.InvalidPasswordError),
        postgres_error(asyncpg.exceptions.ObjectNotInPrerequisiteStateError, "cannot refresh concurrently"),
        asyncpg.InterfaceError("the server expects 2 arguments, 1 was passed"),
        kafka_errors.UnsupportedVersionError(),
        kafka_errors.TopicAuthorizationFailedError(),
        FileNotFoundError("no such template"),
    ],
)
def test_the_message_s_own_failures_are_not_transient(error: Exception) -> None:
    assert not is_transient(error)


def test_the_cause_chain_is_followed() -> None:
    wrapped = RuntimeError("while storing the notice")
    wrapped.__cause__ = ConnectionResetError("peer reset")
    assert transient_dependency(wrapped) == "network"
    implicit = ValueError("while handling it, another failure")
    implicit.__context__ = asyncpg.exceptions.AdminShutdownError("terminating connection")
    assert transient_dependency(implicit) == "database"


def test_a_cycle_in_the_chain_ends() -> None:
    first, second = ValueError("a"), ValueError("b")
    first.__context__, second.__context__ = second, first
    assert not is_transient(first)


def test_backoff_grows_is_capped_and_jittered() -> None:
    backoff = Backoff(initial=0.5, maximum=15.0)
    for attempt in range(1, 30):
        ceiling = min(15.0, 0.5 * 2 ** (attempt - 1))
        delays = {backoff.delay(attempt) for _ in range(20)}
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(delays) > 1, "jittered, so many waiters do not retry in lockstep"
