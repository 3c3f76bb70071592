"""Asynchronous bounces: a signed DSN that arrives after the relay took a message, against real Kafka and PostgreSQL."""

from __future__ import annotations

import asyncpg
import pytest

from devservers.sinks.email import delivery_status_notification
from services.delivery.providers.dsn import SIGNATURE_HEADER, parse_bounce, sign
from shared.envelope import decode
from shared.events import ContactPointDisabled, OpsAlert
from shared.settings import KafkaSettings
from shared.topics import CONTACT_POINT_DISABLED, OPS_ALERT
from shared.vocabulary import Channel
from tests.delivery.harness import Delivery, eventually, running_delivery
from tests.kafkautil import read_topic

pytestmark = pytest.mark.integration

RELAY_SECRET = "Rk2v9QwLx7TnB4mZc8HsJ3pY"


def report_for(message_id: str, *, status: str, recipient: str = "victim@example.org") -> bytes:
    return delivery_status_notification(
        f"Message-ID: {message_id}\nSubject: a notice\n".encode(),
        recipient=recipient,
        status=status,
        diagnostic=f"550 {status} refused",
    )


async def post_report(delivery: Delivery, body: bytes, *, sender: str = "relay") -> int | str:
    """The outcome delivery reports for a DSN signed as the relay signs it, or the HTTP status of a refusal."""
    response = await delivery.http.post(
        f"/v1/bounces/{sender}",
        content=body,
        headers={"Content-Type": "message/rfc822", SIGNATURE_HEADER: sign(RELAY_SECRET, body)},
    )
    return str(response.json()["outcome"]) if response.status_code == 200 else response.status_code


async def sent_email(delivery: Delivery, contact: str) -> tuple[str, str]:
    """Publish one email notice and wait until the relay took it: (notification id, its Message-ID)."""
    request = delivery.request(channel=Channel.EMAIL, contact=contact)
    await delivery.publish(request)
    await eventually(lambda: delivery.outcome(request.notification_id), check=lambda o: o == "sent")
    [stored] = delivery.email_sink.emails(to=contact)
    return request.notification_id, str(stored["message_id"])


async def test_a_late_hard_bounce_from_the_relay_disables_the_address(
    database_url: str, kafka_settings: KafkaSettings, pool: asyncpg.Pool
) -> None:
    async with running_delivery(
        database_url=database_url, kafka=kafka_settings, pool=pool, bounce_secrets={"relay": RELAY_SECRET}
    ) as delivery:
        delivery.email_sink.configure(
            late_bounce_addresses=["moved-away@example.org"],
            bounce_webhook_url=f"{delivery.url}/v1/bounces/relay",
            bounce_webhook_secret=RELAY_SECRET,
        )
        request = delivery.request(channel=Channel.EMAIL, contact="moved-away@example.org")
        await delivery.publish(request)
        await eventually(lambda: delivery.outcome(request.notification_id), check=lambda o: o == "stopped")
        assert len(delivery.email_sink.emails(to="moved-away@example.org")) == 1  # taken first, bounced after
        history = await delivery.history(request.notification_id)
        assert [(a["status"], a["error_code"]) for a in history["attempts"]] == [("permanent-failure", "5.1.1")]
        records = await read_topic(
            kafka_settings, kafka_settings.topic(CONTACT_POINT_DISABLED.name), until=lambda r: len(r) >= 1
        )
        disabled = decode(records[0].value).data
        assert isinstance(disabled, ContactPointDisabled)
        assert (disabled.subscription_id, disabled.reason, disabled.channel) == (
            request.subscription_id,
            "hard_bounce",
            Channel.EMAIL,
        )
        assert await pool.fetchval("SELECT count(*) FROM disabled_contacts") == 1


async def test_a_late_refusal_that_is_not_the_address_is_a_technical_failure_and_an_ops_alert(
    database_url: str, kafka_settings: KafkaSettings, pool: asyncpg.Pool
) -> None:
    async with running_delivery(
        database_url=database_url, kafka=kafka_settings, pool=pool, bounce_secrets={"relay": RELAY_SECRET}
    ) as delivery:
        notification_id, message_id = await sent_email(delivery, "victim-kept@example.org")
        assert await post_report(delivery, report_for(message_id, status="5.7.1")) == "technical_failure"
        assert await delivery.outcome(notification_id) == "failed"
        history = await delivery.history(notification_id)
        assert history["status"] == "technical-failure"
        assert await pool.fetchval("SELECT count(*) FROM disabled_contacts") == 0
        records = await read_topic(kafka_settings, kafka_settings.topic(OPS_ALERT.name), until=lambda r: len(r) >= 1)
        alert = decode(records[0].value).data
        assert isinstance(alert, OpsAlert)
        assert alert.kind == "email_refused"
        assert "5.7.1" in alert.message
        assert "victim-kept" not in alert.message


async def test_refused_reports_change_nothing(
    database_url: str, kafka_settings: KafkaSettings, pool: asyncpg.Pool
) -> None:
    async with running_delivery(
        database_url=database_url, kafka=kafka_settings, pool=pool, bounce_secrets={"relay": RELAY_SECRET}
    ) as delivery:
        notification_id, message_id = await sent_email(delivery, "victim-safe@example.org")
        hard = report_for(message_id, status="5.1.1")
        forged = await delivery.http.post(
            "/v1/bounces/relay", content=hard, headers={SIGNATURE_HEADER: sign("Qz8xWv3LmN5bT7yKc2Hr", hard)}
        )
        assert forged.status_code == 403
        unsigned = await delivery.http.post("/v1/bounces/relay", content=hard)
        assert unsigned.status_code == 403
        assert await post_report(delivery, hard, sender="someone-else") == 404
        huge = hard + b"x" * (64 * 1024)
        assert await post_report(delivery, huge) == 413
        assert await post_report(delivery, b"Subject: hello\n\nnot a report\n") == 400
        assert await post_report(delivery, report_for("<unknown@custodywatch.localhost>", status="5.1.1")) == 404
        delayed = hard.replace(b"Action: failed", b"Action: delayed")
        assert parse_bounce(delayed) is None
        assert await post_report(delivery, delayed) == "ignored"
        assert await delivery.outcome(notification_id) == "sent"
        assert await pool.fetchval("SELECT count(*) FROM disabled_contacts") == 0

        assert await post_report(delivery, hard) == "disabled"
        assert await post_report(delivery, hard) == "ignored"  # the relay may post twice: nothing more happens
        assert await delivery.outcome(notification_id) == "stopped"
        assert await pool.fetchval("SELECT count(*) FROM disabled_contacts") == 1
