"""The whole system with service identity on Kafka: every service its own SCRAM principal under the generated ACLs,
and a victim still gets the notice. The same stack ``make run`` starts (``--kafka-plaintext`` opts out)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import TopicAuthorizationFailedError

from devservers.driver import SystemDriver, custody_record
from devservers.kafka import LocalKafka
from devservers.ports import repo_root
from devservers.stack import Stack, kafka_password_name
from shared.topics import CUSTODY_STATUS_CHANGED

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture(scope="module")
def identity_stack(postgres_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    token = uuid.uuid4().hex[:8]
    stack = Stack(
        repo_root(),
        tmp_path_factory.mktemp("identity-stack"),
        topic_prefix=f"idstack{token}.",
        prefer_default_ports=False,
        kafka_identity=True,
    )
    kafka = LocalKafka(
        repo_root(),
        f"identity-stack-{token}",
        data_dir=tmp_path_factory.mktemp("identity-kafka"),
        scram_users=stack.kafka_users(),
    )
    try:
        stack.start(kafka.start(), postgres_admin_dsn, database_prefix=f"idstack_{token}")
        yield stack
    finally:
        stack.stop()
        kafka.stop()


@pytest.fixture
async def system(identity_stack: Stack) -> AsyncIterator[SystemDriver]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield SystemDriver(identity_stack, client)


async def test_a_notice_arrives_with_every_service_its_own_principal(
    system: SystemDriver, identity_stack: Stack
) -> None:
    token = uuid.uuid4().hex[:6]
    agency, case, number = f"id-{token}", f"CR-ID-{token}", f"+1512556{int(token, 16) % 10_000:04d}"
    key = await system.create_agency(agency)
    victim = await system.subscribe(agency, case, sms=number)
    await system.verify(victim, "sms")
    await system.wait_for_matching(agency, reachable_contacts=1)
    await system.push(agency, key, [custody_record(f"r-{token}", case, "BOOKED")])
    await system.wait_for("sms", number, lambda messages: any("BOOKED" in str(m.get("body")) for m in messages))

    # Subscription's principal may not forge what matching would turn into notices.
    subscription = identity_stack.kafka_admin(identity_stack.env["INGEST_KAFKA__BOOTSTRAP_SERVERS"]).model_copy(
        update={
            "sasl_username": "subscription",
            "sasl_password": identity_stack.secrets[kafka_password_name("subscription")],
        }
    )
    producer = AIOKafkaProducer(**subscription.producer_kwargs())
    await producer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(subscription.topic(CUSTODY_STATUS_CHANGED.name), b"{}", key=b"forged")
    finally:
        await producer.stop()
