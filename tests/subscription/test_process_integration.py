"""The service as a real process: configured from its environment, killed with SIGKILL mid-flow, restarted, and
its contact keys rotated by the operator command. Its log file holds no contact details."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest

from shared.crypto import ContactCipher, ContactDecryptError, generate_key
from shared.envelope import decode, encode, new_event
from shared.events import AgencyProfile, NotificationRequested, SubscriptionState
from shared.settings import KafkaSettings
from shared.topics import AGENCY_PROFILE, NOTIFICATION_REQUESTED, SUBSCRIPTION_STATE
from tests.apps import REPO_ROOT, ServiceProcess
from tests.kafkautil import produce_raw, read_topic
from tests.subscription.conftest import AGENCY_ID

pytestmark = pytest.mark.integration

PHONE = "+14155552671"
BLIND_INDEX_KEY = "process-test-blind-index-key-0123456789"


async def wait_for(pool: asyncpg.Pool, query: str, *args: object) -> None:
    for _ in range(300):
        if await pool.fetchval(query, *args):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out: {query}")


async def states(kafka: KafkaSettings, subscription_id: str, version: int) -> list[SubscriptionState]:
    def mine(records: list) -> list[SubscriptionState]:  # type: ignore[type-arg]
        found = [decode(r.value).data for r in records if r.key == subscription_id.encode()]
        return [s for s in found if isinstance(s, SubscriptionState)]

    records = await read_topic(
        kafka, kafka.topic(SUBSCRIPTION_STATE.name), until=lambda r: any(s.version >= version for s in mine(r))
    )
    return mine(records)


async def test_survives_sigkill_and_rotates_keys(
    database_url: str, pool: asyncpg.Pool, kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    old_key, new_key = generate_key(), generate_key()
    env = {
        "SUBSCRIPTION_ENVIRONMENT": "test",
        "SUBSCRIPTION_DATABASE_URL": database_url,
        "SUBSCRIPTION_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "SUBSCRIPTION_KAFKA__TOPIC_PREFIX": kafka_settings.topic_prefix,
        "SUBSCRIPTION_PUBLIC_BASE_URL": "https://subscribe.custodywatch.test",
        "SUBSCRIPTION_CONTACT_ENCRYPTION_KEYS": old_key,
        "SUBSCRIPTION_BLIND_INDEX_KEY": BLIND_INDEX_KEY,
        "SUBSCRIPTION_LOG_LEVEL": "DEBUG",
    }
    old_cipher = ContactCipher(old_key, BLIND_INDEX_KEY)
    service = ServiceProcess("services.subscription", env, port_variable="SUBSCRIPTION_HTTP_PORT", log_dir=tmp_path)
    service.start()
    try:
        await service.wait_ready()
        profile = AgencyProfile(
            agency_id=AGENCY_ID, name="Cook County Jail", timezone="America/Chicago", updated_at=datetime.now(UTC)
        )
        await produce_raw(
            kafka_settings,
            kafka_settings.topic(AGENCY_PROFILE.name),
            [(AGENCY_ID.encode(), encode(new_event(profile, source="/test")))],
        )
        await wait_for(pool, "SELECT true FROM agencies WHERE agency_id = $1", AGENCY_ID)
        async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
            response = await client.post(
                "/v1/subscriptions",
                json={
                    "agency_id": AGENCY_ID,
                    "identifier": {"kind": "case_number", "value": "CR-7"},
                    "sms": PHONE,
                    "timezone": "America/Chicago",
                },
            )
            assert response.status_code == 201, response.text
        created = response.json()
        subscription_id = created["subscription_id"]
        service.kill()

        # Whatever the relay had not published yet waits in the outbox; the restarted service publishes it.
        service.start()
        await service.wait_ready()
        records = await read_topic(
            kafka_settings, kafka_settings.topic(NOTIFICATION_REQUESTED.name), until=lambda r: len(r) >= 1
        )
        notice = decode(records[0].value).data
        assert isinstance(notice, NotificationRequested)
        assert notice.secret_ciphertext is not None
        code = old_cipher.decrypt(notice.secret_ciphertext)
        token = created["manage_url"].rsplit("/", 1)[1]
        async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
            response = await client.post(
                f"/v1/subscriptions/{subscription_id}/verify",
                json={"channel": "sms", "code": code},
                headers={"Authorization": f"Bearer {token}"},
            )
        assert response.status_code == 200, response.text
        assert [s.version for s in await states(kafka_settings, subscription_id, 2)] == [1, 2]
    finally:
        service.stop()

    command = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.subscription.cli",
        "rotate-contact-keys",
        env={**os.environ, **env, "SUBSCRIPTION_CONTACT_ENCRYPTION_KEYS": f"{new_key},{old_key}"},
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(command.communicate(), timeout=60)
    output = stdout.decode() + stderr.decode()
    assert command.returncode == 0, output
    assert "of 1 subscriptions" in output
    stored = await pool.fetchval("SELECT ciphertext FROM contact_points WHERE subscription_id = $1", subscription_id)
    new_only = ContactCipher(new_key, BLIND_INDEX_KEY)
    assert new_only.decrypt(stored) == PHONE
    with pytest.raises(ContactDecryptError):
        old_cipher.decrypt(stored)
    # Published by the next start of the service (the command only writes the outbox).
    service.start()
    try:
        await service.wait_ready()
        latest = (await states(kafka_settings, subscription_id, 3))[-1]
        assert latest.version == 3
        assert new_only.decrypt(latest.contacts[0].ciphertext) == PHONE
    finally:
        service.stop()

    log = service.log_path.read_text()
    assert "subscription created" in log
    for form in (PHONE, PHONE.removeprefix("+1"), PHONE.removeprefix("+")):
        assert form not in log
        assert form not in output
