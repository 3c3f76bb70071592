"""Fixtures every test can use. Servers start lazily: unit tests never wait for Kafka or PostgreSQL.

Where the servers come from (explicit env, testcontainers, or local processes) is decided in tests/servers.py.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from shared.db import create_pool
from shared.settings import KafkaSettings


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    from tests import servers  # imported here so unit-only runs never load server tooling

    with servers.kafka_bootstrap_servers() as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def postgres_admin_dsn() -> Iterator[str]:
    from tests import servers

    with servers.postgres_admin_dsn() as dsn:
        yield dsn


@pytest.fixture
def unique() -> str:
    """A short random token to keep one test's ids, topics and groups apart from every other test's."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
async def database_url(postgres_admin_dsn: str, unique: str) -> str:
    """A fresh, empty database for this test."""
    from tests import servers

    return await servers.create_database(postgres_admin_dsn, f"test_{unique}")


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, min_size=1, max_size=5)
    yield pool
    await pool.close()


@pytest.fixture
async def kafka_settings(kafka_bootstrap: str, unique: str) -> AsyncIterator[KafkaSettings]:
    """Kafka settings whose topics are this test's alone (a unique topic prefix); they are deleted afterwards, so
    one broker can serve a whole session of tests without filling its memory with partitions."""
    settings = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=f"t{unique}.", client_id=f"test-{unique}")
    yield settings
    admin = AIOKafkaAdminClient(**settings.common_kwargs())
    await admin.start()
    try:
        mine = [topic for topic in await admin.list_topics() if topic.startswith(settings.topic_prefix)]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()
