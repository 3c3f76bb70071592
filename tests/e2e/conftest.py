from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from devservers.driver import SystemDriver
from devservers.stack import Stack, kafka_password_name

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="package")
def stack(kafka_bootstrap: str, postgres_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The whole system (sinks + every service as real processes) on the test session's Kafka and PostgreSQL.

    On the session's own broker every service is its own SCRAM principal under the generated ACLs, as in ``make
    run``; the tests read and write through the broker's PLAINTEXT harness listener (``kafka_bootstrap``). A broker
    from the environment or a container has no accounts: the stack then runs PLAINTEXT."""
    from tests import servers

    token = uuid.uuid4().hex[:8]
    run_dir = tmp_path_factory.mktemp("stack")
    identity = servers.kafka_identity()
    if identity is not None:  # the stack's secrets start with the principals' passwords the broker was formatted with
        lines = [f"{kafka_password_name(user)}={password}\n" for user, password in identity.passwords.items()]
        (run_dir / "secrets.env").write_text("".join(lines))
    stack = Stack(
        ROOT,
        run_dir,
        kafka_identity=identity is not None,
        topic_prefix=f"e2e{token}.",
        prefer_default_ports=False,
        # Every test subscribes from 127.0.0.1 and acts as the one admin; the abuse limits would throttle the suite.
        extra_env={
            "SUBSCRIPTION_SUBSCRIBE_LIMIT_PER_CLIENT_PER_HOUR": "10000",
            "SUBSCRIPTION_VERIFY_LIMIT_PER_CLIENT_PER_HOUR": "10000",
            "SUBSCRIPTION_MANAGE_LIMIT_PER_CLIENT_PER_MINUTE": "10000",
            "OPS_ADMIN_ACTION_LIMIT": "10000",
            # A notice that keeps failing is parked within seconds, not a day (the replay test needs one).
            "DELIVERY_RETRY_MAX_ATTEMPTS": "2",
            "DELIVERY_RETRY_BASE_SECONDS": "1",
            "DELIVERY_RETRY_MAX_DELAY_SECONDS": "2",
        },
    )
    try:
        bootstrap = identity.bootstrap if identity is not None else kafka_bootstrap
        stack.start(bootstrap, postgres_admin_dsn, database_prefix=f"e2e_{token}")
        yield stack
    finally:
        stack.stop()


@pytest.fixture
async def system(stack: Stack) -> AsyncIterator[SystemDriver]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield SystemDriver(stack, client)
