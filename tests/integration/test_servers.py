"""The test servers themselves: Kafka 4.x and PostgreSQL answer and behave."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.protocol.admin import ApiVersionRequest

from tests import servers

pytestmark = pytest.mark.integration

# API keys whose oldest versions Kafka 4.0 dropped (KIP-896); 3.x brokers still
# accept version 0 of all of them.
FETCH, LIST_OFFSETS, OFFSET_COMMIT = 1, 2, 8


@pytest.fixture(scope="module")
def bootstrap() -> Iterator[str]:
    with servers.kafka_bootstrap_servers() as value:
        yield value


@pytest.fixture(scope="module")
def admin_dsn() -> Iterator[str]:
    with servers.postgres_admin_dsn() as value:
        yield value


def test_reports_its_source(bootstrap: str, admin_dsn: str) -> None:
    source = servers.which_source()
    assert source.startswith("kafka=")
    assert ", postgres=" in source


@pytest.mark.asyncio
async def test_kafka_answers_with_cluster_id(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
    finally:
        await admin.close()
    assert cluster["cluster_id"]
    assert len(cluster["brokers"]) >= 1


@pytest.mark.asyncio
async def test_kafka_broker_is_version_4(bootstrap: str) -> None:
    host, port = bootstrap.rsplit(",", 1)[0].rsplit(":", 1)
    conn = await create_conn(host, int(port))
    try:
        response = await conn.send(ApiVersionRequest())
    finally:
        conn.close()
    versions = {key: (low, high) for key, low, high in response.api_versions}
    assert versions[FETCH][0] >= 4, versions[FETCH]
    assert versions[LIST_OFFSETS][0] >= 1, versions[LIST_OFFSETS]
    assert versions[OFFSET_COMMIT][0] >= 2, versions[OFFSET_COMMIT]


@pytest.mark.asyncio
async def test_kafka_produce_consume_round_trip(bootstrap: str) -> None:
    topic = f"servers-test-{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for i in range(5):
            await producer.send_and_wait(topic, f"value-{i}".encode(), key=f"key-{i}".encode())
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"servers-test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    received: dict[bytes, bytes] = {}
    try:
        async with asyncio.timeout(30):
            while len(received) < 5:
                batches = await consumer.getmany(timeout_ms=1000)
                for records in batches.values():
                    received.update({r.key: r.value for r in records if r.key and r.value})
        await consumer.commit()
    finally:
        await consumer.stop()
    assert received == {f"key-{i}".encode(): f"value-{i}".encode() for i in range(5)}


@pytest.mark.asyncio
async def test_postgres_version(admin_dsn: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        version = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    assert int(version.split(".")[0].split()[0]) >= 13, version


@pytest.mark.asyncio
async def test_create_database_gives_a_fresh_database(admin_dsn: str) -> None:
    name = f"servers_test_{uuid.uuid4().hex[:10]}"
    dsn = await servers.create_database(admin_dsn, name)
    assert dsn.endswith(f"/{name}")

    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT current_database()") == name
        await conn.execute("CREATE TABLE leftover (id int)")
    finally:
        await conn.close()

    # Creating it again drops the old one, even with a client still connected.
    lingering = await asyncpg.connect(dsn)
    try:
        assert await servers.create_database(admin_dsn, name) == dsn
    finally:
        lingering.terminate()  # the server already dropped this connection
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT to_regclass('leftover')") is None
    finally:
        await conn.close()

    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()
