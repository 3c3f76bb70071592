"""Service identity on Kafka: a SASL/SCRAM broker with the ACLs generated from the topic table.

Runs its own broker with a harness listener, as the test session's broker has one: PLAINTEXT on 127.0.0.1 for the
test process, beside the SASL listener the services use."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError

from devservers.kafka import SUPER_USER, KafkaStartError, LocalKafka
from devservers.ports import repo_root
from shared.acls import SERVICES, all_acls, create_acls, service_acls
from shared.settings import KafkaSettings
from shared.topics import ALL_TOPICS, CUSTODY_STATUS_CHANGED, NOTIFICATION_REQUESTED, ensure_topics

pytestmark = pytest.mark.integration

PREFIX = "id."


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    users = {user: secrets.token_urlsafe(18) for user in (SUPER_USER, *SERVICES)}
    kafka = LocalKafka(
        repo_root(),
        f"identity-{uuid.uuid4().hex[:6]}",
        data_dir=tmp_path_factory.mktemp("kafka"),
        scram_users=users,
        harness_listener=True,
    )
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.stop()


@pytest.fixture(scope="module")
async def with_acls(broker: LocalKafka) -> LocalKafka:
    admin = broker.admin_settings().model_copy(update={"topic_prefix": PREFIX})
    await ensure_topics(admin, list(ALL_TOPICS))
    await create_acls(admin, all_acls(PREFIX))
    return broker


def as_service(broker: LocalKafka, service: str) -> KafkaSettings:
    return broker.client_settings(service).model_copy(update={"topic_prefix": PREFIX})


async def produce(settings: KafkaSettings, topic: str, value: bytes = b"{}") -> None:
    producer = AIOKafkaProducer(**settings.producer_kwargs())
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic(topic), value, key=b"k")
    finally:
        await producer.stop()


def test_acls_follow_the_topic_table() -> None:
    writes = {
        (acl.resource_name, acl.service) for acl in all_acls() if acl.operation.name == "WRITE" and acl.service != "ops"
    }
    for spec in ALL_TOPICS:
        producers = {service for topic, service in writes if topic == spec.name}
        assert producers == set(spec.producers) - {"ops"}, spec.name
    assert not any(
        acl.resource_name == NOTIFICATION_REQUESTED.name and acl.operation.name == "WRITE"
        for acl in service_acls("ingest")
    )


async def test_a_client_without_credentials_is_refused(with_acls: LocalKafka) -> None:
    anonymous = KafkaSettings(bootstrap_servers=with_acls.bootstrap, request_timeout_ms=5000)
    with pytest.raises(KafkaError):
        await produce(anonymous, CUSTODY_STATUS_CHANGED.name)
    wrong = as_service(with_acls, "ingest").model_copy(update={"sasl_password": "not-the-password-at-all"})
    with pytest.raises(KafkaError):
        await produce(wrong, CUSTODY_STATUS_CHANGED.name)


async def test_only_the_harness_listener_takes_a_client_without_credentials(with_acls: LocalKafka) -> None:
    harness = KafkaSettings(bootstrap_servers=with_acls.harness_bootstrap, topic_prefix=PREFIX)
    await produce(harness, NOTIFICATION_REQUESTED.name)  # the test process: a super user, as a test needs
    anonymous = harness.model_copy(update={"bootstrap_servers": with_acls.bootstrap, "request_timeout_ms": 5000})
    with pytest.raises(KafkaError):
        await produce(anonymous, NOTIFICATION_REQUESTED.name)


async def test_each_principal_writes_only_its_own_topics(with_acls: LocalKafka) -> None:
    ingest = as_service(with_acls, "ingest")
    await produce(ingest, CUSTODY_STATUS_CHANGED.name, b'{"genuine": true}')
    with pytest.raises(TopicAuthorizationFailedError):
        await produce(ingest, NOTIFICATION_REQUESTED.name)
    # A forged custody event from any other service's principal is refused by the broker.
    for forger in ("subscription", "matching", "delivery"):
        with pytest.raises(TopicAuthorizationFailedError):
            await produce(as_service(with_acls, forger), CUSTODY_STATUS_CHANGED.name, b'{"forged": true}')
    # Matching reads what ingest wrote, with its own principal and group.
    matching = as_service(with_acls, "matching")
    consumer = AIOKafkaConsumer(
        matching.topic(CUSTODY_STATUS_CHANGED.name), **matching.consumer_kwargs("matching-identity-test")
    )
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=10_000)
    finally:
        await consumer.stop()
    assert [record.value for records in batch.values() for record in records] == [b'{"genuine": true}']


def test_a_broker_formatted_for_other_users_says_so_instead_of_refusing_everyone(tmp_path: Path) -> None:
    before = LocalKafka(repo_root(), "identity-users", data_dir=tmp_path, scram_users={SUPER_USER: "first-password"})
    before.log_dir.mkdir(parents=True)
    (before.log_dir / "meta.properties").write_text("formatted\n")
    (tmp_path / "scram-users.sha256").write_text("digest-of-other-users\n")
    with pytest.raises(KafkaStartError, match="formatted with other SCRAM users"):
        before.start()
