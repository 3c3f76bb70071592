"""Where the integration tests get Kafka and PostgreSQL from.

For each server, in this order:

1. ``env``: an explicit ``KAFKA_BOOTSTRAP_SERVERS`` / ``DATABASE_URL`` (e.g. from
   ``.local/infra.env`` after ``python -m devservers up``, or CI services);
2. ``docker``: testcontainers, if a Docker engine answers (checked in < 2 s);
3. ``local``: :class:`LocalKafka` / :class:`LocalPostgres` processes under
   ``<repo>/.local/test-servers/``, removed again afterwards. The local broker runs with service identity
   (SASL/SCRAM, ACLs) for the services of the e2e stack (:func:`kafka_identity`); the tests themselves get its
   harness listener, PLAINTEXT on 127.0.0.1, whose clients are a super user.

``CUSTODY_WATCH_TEST_SERVERS=docker|local`` skips the detection (the
environment variables still win). ``CUSTODY_WATCH_KAFKA_IMAGE`` and
``CUSTODY_WATCH_POSTGRES_IMAGE`` choose the container images.

Entering a context manager while it is already active in this process reuses
the running server (reference counted), so a module fixture and a session
fixture never start two brokers.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from devservers.kafka import SUPER_USER, LocalKafka
from devservers.ports import pid_alive, repo_root
from devservers.postgres import LocalPostgres, replace_database
from shared.acls import SERVICES

__all__ = [
    "create_database",
    "docker_available",
    "kafka_bootstrap_servers",
    "kafka_identity",
    "postgres_admin_dsn",
    "which_source",
]

KAFKA_ENV = "KAFKA_BOOTSTRAP_SERVERS"
POSTGRES_ENV = "DATABASE_URL"
FORCE_ENV = "CUSTODY_WATCH_TEST_SERVERS"
# Confluent Platform 8.x ships Apache Kafka 4.x (testcontainers' KafkaContainer
# expects the cp-kafka image layout).
KAFKA_IMAGE = os.environ.get("CUSTODY_WATCH_KAFKA_IMAGE", "confluentinc/cp-kafka:8.0.0")
POSTGRES_IMAGE = os.environ.get("CUSTODY_WATCH_POSTGRES_IMAGE", "postgres:16-alpine")
_DB_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

_docker_answer: bool | None = None


def docker_available() -> bool:
    """True if a Docker engine answers a ping (cached; fast when there is none)."""
    global _docker_answer  # noqa: PLW0603 - a process-wide memo
    if _docker_answer is None:
        _docker_answer = _ping_docker()
    return _docker_answer


def _ping_docker() -> bool:
    sockets = ("/var/run/docker.sock", str(Path.home() / ".docker/run/docker.sock"))
    if not os.environ.get("DOCKER_HOST") and not any(os.path.exists(s) for s in sockets):
        return False
    try:
        import docker

        client = docker.from_env(timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def _choose(env_var: str) -> str:
    if os.environ.get(env_var):
        return "env"
    forced = os.environ.get(FORCE_ENV, "").strip().lower()
    if forced in {"docker", "local"}:
        return forced
    if forced:
        raise ValueError(f"{FORCE_ENV} must be 'docker' or 'local', not {forced!r}")
    return "docker" if docker_available() else "local"


def _test_servers_dir() -> Path:
    return repo_root() / ".local" / "test-servers"


def _purge_stale(kind: str) -> None:
    """Stop and delete servers left behind by test runs that were killed."""
    base = _test_servers_dir()
    for path in base.glob(f"{kind}-*"):
        try:
            owner = int(path.name.rsplit("-", 1)[1])
        except ValueError:
            continue
        if owner == os.getpid() or pid_alive(owner):
            continue
        with contextlib.suppress(Exception):
            if kind == "kafka":
                LocalKafka(repo_root(), data_dir=path).kill()
            else:
                LocalPostgres(repo_root(), instance_dir=path).kill()
        shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True)
class KafkaIdentity:
    """The SASL/SCRAM side of the session's broker: where the services connect, and each principal's password."""

    bootstrap: str
    passwords: dict[str, str]
    harness: str
    """The PLAINTEXT listener of the test process (what ``kafka_bootstrap_servers`` yields)."""


_kafka_identity: KafkaIdentity | None = None


def kafka_identity() -> KafkaIdentity | None:
    """Service identity on the session's broker while this process runs it (``local``); None for a broker from the
    environment or a container, which stays PLAINTEXT."""
    return _kafka_identity


# -- the three sources, per server ------------------------------------------------
@contextmanager
def _kafka_from(source: str) -> Iterator[str]:
    if source == "env":
        yield os.environ[KAFKA_ENV]
    elif source == "docker":
        from testcontainers.community.kafka import KafkaContainer

        with KafkaContainer(KAFKA_IMAGE).with_kraft() as container:
            yield str(container.get_bootstrap_server())
    else:
        _purge_stale("kafka")
        data_dir = _test_servers_dir() / f"kafka-{os.getpid()}"
        global _kafka_identity  # noqa: PLW0603 - the one session broker of this process
        passwords = {user: secrets.token_urlsafe(24) for user in (SUPER_USER, *SERVICES)}
        broker = LocalKafka(
            repo_root(), f"test-{os.getpid()}", data_dir=data_dir, scram_users=passwords, harness_listener=True
        )
        try:
            _kafka_identity = KafkaIdentity(broker.start(), passwords, broker.harness_bootstrap)
            yield broker.harness_bootstrap
        finally:
            _kafka_identity = None
            broker.stop()
            shutil.rmtree(data_dir, ignore_errors=True)


@contextmanager
def _postgres_from(source: str) -> Iterator[str]:
    if source == "env":
        yield os.environ[POSTGRES_ENV]
    elif source == "docker":
        from testcontainers.community.postgres import PostgresContainer

        container = PostgresContainer(
            POSTGRES_IMAGE, username="postgres", password="postgres", dbname="postgres", driver=None
        )
        with container:
            yield str(container.get_connection_url())
    else:
        _purge_stale("postgres")
        instance_dir = _test_servers_dir() / f"postgres-{os.getpid()}"
        cluster = LocalPostgres(repo_root(), f"test-{os.getpid()}", instance_dir=instance_dir, fast=True)
        try:
            yield cluster.start()
        finally:
            cluster.stop()
            shutil.rmtree(instance_dir, ignore_errors=True)


class _Shared:
    """One server per process, shared by nested/overlapping users (ref counted)."""

    def __init__(self, env_var: str, factory: Callable[[str], AbstractContextManager[str]]) -> None:
        self.env_var = env_var
        self.factory = factory
        self.source: str | None = None
        self.value: str | None = None
        self._users = 0
        self._stack: ExitStack | None = None
        self._lock = threading.Lock()

    @contextmanager
    def acquire(self) -> Iterator[str]:
        with self._lock:
            if self._users == 0:
                source = _choose(self.env_var)
                stack = ExitStack()
                self.value = stack.enter_context(self.factory(source))
                self.source, self._stack = source, stack
            self._users += 1
            value = self.value
        if value is None:  # pragma: no cover - guarded above
            raise RuntimeError("server value missing")
        try:
            yield value
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0 and self._stack is not None:
                    stack, self._stack, self.value = self._stack, None, None
                    stack.close()


_KAFKA = _Shared(KAFKA_ENV, _kafka_from)
_POSTGRES = _Shared(POSTGRES_ENV, _postgres_from)


def kafka_bootstrap_servers() -> AbstractContextManager[str]:
    """Context manager yielding a Kafka bootstrap address (``host:port``)."""
    return _KAFKA.acquire()


def postgres_admin_dsn() -> AbstractContextManager[str]:
    """Context manager yielding a superuser DSN (database ``postgres``)."""
    return _POSTGRES.acquire()


def which_source() -> str:
    """E.g. ``"kafka=local, postgres=env"``: what is (or would be) used."""
    kafka = _KAFKA.source if _KAFKA.value is not None else _choose(KAFKA_ENV)
    postgres = _POSTGRES.source if _POSTGRES.value is not None else _choose(POSTGRES_ENV)
    return f"kafka={kafka}, postgres={postgres}"


async def create_database(admin_dsn: str, name: str) -> str:
    """Create database ``name`` afresh (dropping any old one); return its DSN."""
    if not _DB_NAME_RE.match(name):
        raise ValueError(f"invalid database name: {name!r}")
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return replace_database(admin_dsn, name)
