"""Each service's Kafka principal and what it may do, derived from the topic table in :mod:`shared.topics`.

A service may write only the topics it produces and read only the topics it consumes (plus its own retry and
dead-letter topics and its consumer group); nothing here is typed a second time. Ops also reads every dead-letter
topic and consumer group (lag, dead letters) and writes the event topics, because an admin's replay re-publishes a
dead letter to its original topic (audited on the dashboard).

``python -m shared.acls [--prefix P] [--bootstrap-server HOST:PORT]`` prints the ``kafka-acls.sh`` commands of a
deployment; ``--apply`` creates them instead, as the super user ``admin`` over SASL_PLAINTEXT with the password in
``CW_KAFKA_ADMIN_PASSWORD`` (docker-compose.yml's ``kafka-acls`` job). The local broker
(``deploy/local/devservers/kafka.py``) and the tests apply the same list with :func:`create_acls`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code
from aiokafka.protocol.admin import CreateAclsRequest

from shared.settings import KafkaSettings
from shared.topics import ALL_TOPICS, TopicSpec, consumer_group_topics

SERVICES = ("ingest", "subscription", "matching", "delivery", "ops")
CONSUMING_SERVICES = tuple(service for service in SERVICES if any(service in t.consumers for t in ALL_TOPICS))
TRANSACTIONAL_PREFIXES = {"matching": "matching-"}
"""Services that produce in Kafka transactions, and the prefix of their transactional ids."""


class ResourceType(IntEnum):
    TOPIC = 2
    GROUP = 3
    TRANSACTIONAL_ID = 5


class PatternType(IntEnum):
    LITERAL = 3
    PREFIXED = 4


class Operation(IntEnum):
    READ = 3
    WRITE = 4
    CREATE = 5
    DESCRIBE = 8


ALLOW = 3


@dataclass(frozen=True, order=True)
class Acl:
    """One allowed operation of one service's principal (``User:<service>``) on one resource."""

    service: str
    resource_type: ResourceType
    resource_name: str
    pattern: PatternType
    operation: Operation

    @property
    def principal(self) -> str:
        return f"User:{self.service}"


def every_topic() -> list[TopicSpec]:
    """The event topics and every consuming group's retry and dead-letter topics."""
    return [*ALL_TOPICS, *(spec for group in CONSUMING_SERVICES for spec in consumer_group_topics(group))]


def service_acls(service: str, topic_prefix: str = "") -> list[Acl]:
    allowed: set[tuple[ResourceType, str, PatternType, Operation]] = set()

    def on_topic(spec: TopicSpec, *operations: Operation) -> None:
        for operation in (*operations, Operation.DESCRIBE, Operation.CREATE):  # services create what they use
            allowed.add((ResourceType.TOPIC, topic_prefix + spec.name, PatternType.LITERAL, operation))

    for spec in every_topic():
        if service in spec.producers:
            on_topic(spec, Operation.WRITE)
        if service in spec.consumers:
            on_topic(spec, Operation.READ)
    if service in CONSUMING_SERVICES:  # its group, and the groups of its replicas or tests ("matching-…")
        for operation in (Operation.READ, Operation.DESCRIBE):
            allowed.add((ResourceType.GROUP, service, PatternType.PREFIXED, operation))
    if (transactional := TRANSACTIONAL_PREFIXES.get(service)) is not None:
        for operation in (Operation.WRITE, Operation.DESCRIBE):
            allowed.add((ResourceType.TRANSACTIONAL_ID, transactional, PatternType.PREFIXED, operation))
    if service == "ops":
        for spec in every_topic():
            on_topic(spec, Operation.WRITE if spec in ALL_TOPICS else Operation.READ)
        for group in CONSUMING_SERVICES:
            allowed.add((ResourceType.GROUP, group, PatternType.PREFIXED, Operation.DESCRIBE))
    return sorted(Acl(service, *entry) for entry in allowed)


def all_acls(topic_prefix: str = "") -> list[Acl]:
    return [acl for service in SERVICES for acl in service_acls(service, topic_prefix)]


class AclCreationError(RuntimeError):
    pass


async def create_acls(admin_settings: KafkaSettings, acls: Iterable[Acl]) -> None:
    """Create the ACLs on the broker with a principal allowed to (a super user). aiokafka has the protocol request
    but no admin method for it, so the request is sent as its admin client sends its own."""
    admin = AIOKafkaAdminClient(**admin_settings.common_kwargs())
    await admin.start()
    try:
        for acl in acls:
            request = CreateAclsRequest(
                acl.resource_type, acl.resource_name, acl.pattern, acl.principal, "*", acl.operation, ALLOW
            )
            response = await admin._send_request(request)
            for error_code, message in response.creation_responses:
                if error_code:
                    raise AclCreationError(f"{acl}: {for_code(error_code).__name__} {message or ''}".strip())
    finally:
        await admin.close()


OPERATION_NAMES = {Operation.READ: "Read", Operation.WRITE: "Write", Operation.CREATE: "Create"}


def kafka_acls_command(acl: Acl, bootstrap_server: str) -> str:
    resource = {
        ResourceType.TOPIC: "--topic",
        ResourceType.GROUP: "--group",
        ResourceType.TRANSACTIONAL_ID: "--transactional-id",
    }[acl.resource_type]
    pattern = "prefixed" if acl.pattern is PatternType.PREFIXED else "literal"
    operation = OPERATION_NAMES.get(acl.operation, acl.operation.name.capitalize())
    return (
        f"kafka-acls.sh --bootstrap-server {bootstrap_server} --command-config admin.properties --add"
        f" --allow-principal {acl.principal} --operation {operation} {resource} '{acl.resource_name}'"
        f" --resource-pattern-type {pattern}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefix", default="", help="the deployment's topic prefix (KAFKA__TOPIC_PREFIX)")
    parser.add_argument("--bootstrap-server", default="kafka:9093")
    parser.add_argument("--apply", action="store_true", help="create the ACLs as admin (CW_KAFKA_ADMIN_PASSWORD)")
    arguments = parser.parse_args()
    if arguments.apply:
        admin = KafkaSettings(
            bootstrap_servers=arguments.bootstrap_server,
            security_protocol="SASL_PLAINTEXT",
            sasl_username="admin",
            sasl_password=os.environ["CW_KAFKA_ADMIN_PASSWORD"],
        )
        asyncio.run(create_acls(admin, all_acls(arguments.prefix)))
        print(f"created {len(all_acls(arguments.prefix))} ACLs")
        return
    for acl in all_acls(arguments.prefix):
        print(kafka_acls_command(acl, arguments.bootstrap_server))


if __name__ == "__main__":
    main()
