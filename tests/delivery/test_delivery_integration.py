"""The delivery service against real Kafka, PostgreSQL and the local SMS and email sinks."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from aiokafka import ConsumerRecord

from devservers.sinks.sms import SmsSink, SmsSinkConfig
from services.delivery.rendering import TEMPLATE_DIRECTORY
from shared.envelope import decode
from shared.events import (
    ContactPointDisabled,
    NoticeAcknowledged,
    NotificationKind,
    NotificationStatusChanged,
    OpsAlert,
)
from shared.kafka.records import header
from shared.settings import KafkaSettings
from shared.topics import (
    CONTACT_POINT_DISABLED,
    NOTIFICATION_ACKNOWLEDGED,
    NOTIFICATION_REQUESTED,
    NOTIFICATION_STATUS_CHANGED,
)
from shared.twilio import twilio_signature
from shared.vocabulary import Channel, CustodyStatus, Language, Urgency
from tests.delivery.harness import Delivery, eventually, running_delivery
from tests.kafkautil import produce_raw, read_topic

pytestmark = pytest.mark.integration


async def outcomes(delivery: Delivery, ids: list[str]) -> dict[str, str | None]:
    rows = await delivery.pool.fetch(
        "SELECT notification_id, outcome FROM notifications WHERE notification_id = ANY($1::text[])", ids
    )
    return {row["notification_id"]: row["outcome"] for row in rows}


async def test_sms_and_email_arrive_with_the_right_text_in_both_languages(
    database_url: str, kafka_settings: KafkaSettings, pool: asyncpg.Pool
) -> None:
    async with running_delivery(database_url=database_url, kafka=kafka_settings, pool=pool) as delivery:
        await delivery.publish_agency()
        await eventually(
            lambda: delivery.pool.fetchval("SELECT count(*) FROM agencies"), check=lambda n: n == 1, what="agency"
        )
        sms_en = delivery.request(channel=Channel.SMS, language=Language.ENGLISH)
        sms_es = delivery.request(channel=Channel.SMS, language=Language.SPANISH)
        mail_en = delivery.request(channel=Channel.EMAIL, language=Language.ENGLISH)
        mail_es = delivery.request(channel=Channel.EMAIL, language=Language.SPANISH)
        await delivery.publish(sms_en, sms_es, mail_en, mail_es)

        ids = [sms_en.notification_id, sms_es.notification_id, mail_en.notification_id, mail_es.notification_id]
        done = await eventually(
            lambda: outcomes(delivery, ids),
            check=lambda found: (
                found.get(ids[0]) == "delivered"
                and found.get(ids[1]) == "delivered"
                and found.get(ids[2]) == "sent"
                and found.get(ids[3]) == "sent"
            ),
            what="all four notices handed off and the SMS delivered",
        )
        assert len(done) == 4

        [english] = delivery.sms_for(sms_en.notification_id)
        [spanish] = delivery.sms_for(sms_es.notification_id)
        for message in (english, spanish):
            assert "Example County Sheriff" in message["body"]
            assert "CR-2026-0042" in message["body"]
            assert message["status"] == "delivered"
        assert "transfer" in english["body"].lower()
        assert "traslad" in spanish["body"].lower()
        assert english["body"] != spanish["body"]

        emails = {email["subject"]: email for email in delivery.email_sink.emails()}
        assert len(emails) == 2
        english_email = next(e for e in emails.values() if "transfer" in (e["text"] or "").lower())
        spanish_email = next(e for e in emails.values() if "traslad" in (e["text"] or "").lower())
        for email in (english_email, spanish_email):
            assert email["html"]
            assert "Example County Sheriff" in email["html"]
            assert "+15125550199" in (email["text"] or "") or "512" in (email["text"] or "")
            assert "https://custodywatch.example/v1/unsubscribe/tok456" in email["headers"]["List-Unsubscribe"]
            assert email["headers"].get("List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"

        # Every status change went out on Kafka, contacts only masked.
        def sms_delivered(records: list[ConsumerRecord[bytes, bytes]]) -> bool:
            events = [decode(r.value).data for r in records]
            return sum(isinstance(e, NotificationStatusChanged) and e.status == "delivered" for e in events) >= 2

        records = await read_topic(
            kafka_settings, kafka_settings.topic(NOTIFICATION_STATUS_CHANGED.name), until=sms_delivered
        )
        raw = b"".join(record.value or b"" for record in records)
        assert b"@example.org" not in raw
        assert b"+1555" not in raw

        history = await delivery.history(sms_en.notification_id)
        assert history["contact"] == sms_en.contact_masked
        assert [a["status"] for a in history["attempts"]] == ["delivered"]
        assert history["attempts"][0]["provider"] == "local"
        assert "+1555" not in json.dumps(history)
        exposition = (await delivery.http.get("/metrics")).text
        assert 'cw_delivery_notifications_total{channel="sms",provider="local",status="delivered"}' in exposition
        assert 'cw_delivery_latency_seconds_count{stage="handoff"}' in exposition


async def test_half_failing_sms_sink_still_delivers_every_notice_exactly_once(
    database_url: str, kafka_settings: KafkaSettings, pool: asyncpg.Pool
) -> None:
    config = SmsSinkConfig(failure_rate=0.5, seed=7)
    async with running_delivery(
        database_url=database_url, kafka=kafka_settings, pool=pool, sms_config=config
    ) as delivery:
        requests = [delivery.request() for _ in range(20)]
        await delivery.publish(*requests)
        ids = [r.notification_id for r in requests]
        await eventually(
            lambda: outcomes(delivery, ids),
            check=lambda found: len(found) == 20 and all(v == "delivered" for v in found.values()),
            timeout=60,
            what="every notice delivered",
        )
        for request in requests:
            stored = delivery.sms_for(request.notification_id)
            assert [m["status"] for m in stored] == ["delivered"], request.notification_id
        retried = await delivery.pool.fetchval("SELECT count(*) FROM attempts WHERE status = 'temporary-failure'")
        assert retried > 0  # the sink did fail, and those attempts were retried
        # Redelivering the same requests changes nothing.
        await delivery.publish(*requests[:5])
        await asyncio.sleep(2)
        assert sum(len(delivery.sms_for(i)) for i in ids) == 20


async def test_forged_and_malformed_callbacks_are_refused_without_touching_state(
    database_url: str, kafka_settings: KafkaSettings, pool: asyncpg.Pool
) -> None:
    config = SmsSinkConfig(callback_delay_seconds=30)  # our own callbacks only, in this test
    async with running_delivery(
        database_url=database_url, kafka=kafka_settings, pool=pool, sms_config=config
    ) as delivery:
        request = delivery.request()
        await delivery.publish(request)
        sent = await eventually(
            lambda: delivery.history(request.notification_id, allow_missing=True),
            check=lambda h: bool(h.get("attempts")) and h["attempts"][0]["status"] == "sent",
            what="the hand-off",
        )
        attempt = sent["attempts"][0]
        path = f"/v1/callbacks/sms/local?ref={attempt['attempt_id']}"
        url = delivery.url + path
        form = {"MessageSid": attempt["provider_message_id"], "MessageStatus": "failed", "ErrorCode": "21610"}

        forged = await delivery.http.post(path, data=form, headers={"X-Twilio-Signature": "Zm9yZ2Vk"})
        assert forged.status_code == 403
        unsigned = await delivery.http.post(path, data=form)
        assert unsigned.status_code == 403
        wrong_key = twilio_signature("not-the-auth-token", url, form)
        assert (await delivery.http.post(path, data=form, headers={"X-Twilio-Signature": wrong_key})).status_code == 403
        unknown_provider = await delivery.http.post("/v1/callbacks/sms/nobody", data=form)
        assert unknown_provider.status_code == 404

        malformed = {"MessageStatus": "delivered"}
        signed = twilio_signature(delivery.sms_sink.auth_token, url, malformed)
        response = await delivery.http.post(path, data=malformed, headers={"X-Twilio-Signature": signed})
        assert response.status_code == 400
        odd = {"MessageSid": attempt["provider_message_id"], "MessageStatus": "teleported"}
        signed = twilio_signature(delivery.sms_sink.auth_token, url, odd)
        assert (await delivery.http.post(path, data=odd, headers={"X-Twilio-Signature": signed})).status_code == 400

        unchanged = await delivery.history(request.notification_id)
        assert unchanged["attempts"][0]["status"] == "sent"
        assert await delivery.pool.fetchval("SELECT count(*) FROM disabled_contacts") == 0

        # A genuine callback with the same shape is applied.
        good = {"MessageSid": attempt["provider_message_id"], "MessageStatus": "delivered"}
        signed = twilio_signature(delivery.sms_sink.auth_token, url, good)
        applied = await delivery.http.post(path, data=good, headers={"X-Twilio-Signature": signed})
        assert applied.status_code == 200, applied.text
        assert (await delivery.history(request.notification_id))["attempts"][0]["status"] == "delivered"


async def test_opted_out_number_disables_the_contact_point_and_gets_no_more_sends(
    database_url: str, kafka_settings: KafkaSettings, pool: asyncpg.Pool
) -> None:
    async with running_delivery(database_url=database_url, kafka=kafka_settings, pool=pool) as delivery:
        first = delivery.request()
        number = delivery.cipher.decrypt(first.contact_ciphertext)
        delivery.sms_sink.configure(opted_out_numbers=[number])
        await delivery.publish(first)
        await eventually(
            lambda: delivery.outcome(first.notification_id), check=lambda o: o == "stopped", what="opt-out"
        )
        history = await delivery.history(first.notification_id)
        assert history["attempts"][0]["status"] == "permanent-failure"
        assert history["attempts"][0]["error_code"] == "21610"

        records = await read_topic(
            kafka_settings, kafka_settings.topic(CONTACT_POINT_DISABLED.name), until=lambda r: len(r) >= 1
        )
        disabled = decode(records[0].value).data
        assert isinstance(disabled, ContactPointDisabled)
        assert disabled.subscription_id == first.subscription_id
        assert disabled.reason == "opted_out"
        assert number.encode() not in (records[0].value or b"")

        # The number is no longer used, even if someone still asks; another subscriber's number still works.
        delivery.sms_sink.configure(opted_out_numbers=[])
        again = delivery.request(contact=number, subscription_id=first.subscription_id)
        other = delivery.request()
        await delivery.publish(again, other)
        await eventually(
            lambda: outcomes(delivery, [again.notification_id, other.notification_id]),
            check=lambda found: (
                found.get(again.notification_id) == "stopped" and found.get(other.notification_id) == "delivered"
            ),
            what="second notice stopped, other delivered",
        )
        assert [m for m in delivery.sms_sink.messages() if m["to"] == number] == []


async def test_quiet_hours_hold_an_informational_notice_and_not_an_urgent_one(
    database_url: str, kafka_settings: KafkaSettings, pool: asyncpg.Pool
) -> None:
    async with running_delivery(database_url=database_url, kafka=kafka_settings, pool=pool) as delivery:
        now = datetime.now(UTC)
        # The subscriber's quiet hours are "now" wherever the test runs: an hour either side, in their zone.
        quiet = ((now - timedelta(hours=1)).time(), (now + timedelta(hours=1)).time())
        informational = delivery.request(status=CustodyStatus.TRANSFERRED, quiet_hours=quiet)
        urgent = delivery.request(status=CustodyStatus.RELEASED, quiet_hours=quiet)
        assert (informational.urgency, urgent.urgency) == (Urgency.INFORMATIONAL, Urgency.URGENT)
        await delivery.publish(informational, urgent)

        await eventually(
            lambda: asyncio.sleep(0, delivery.sms_for(urgent.notification_id)),
            check=lambda messages: len(messages) == 1,
            what="the urgent notice sent at night",
        )
        held = await eventually(
            lambda: delivery.history(informational.notification_id, allow_missing=True),
            check=bool,
            what="the informational notice stored",
        )
        assert held["attempts"] == []
        due = datetime.fromisoformat(held["next_attempt_at"])
        assert due > now + timedelta(minutes=50)
        assert delivery.sms_for(informational.notification_id) == []


async def test_unacknowledged_urgent_notices_repeat_and_stop_on_acknowledgement(
    database_url: str, kafka_settings: KafkaSettings, pool: asyncpg.Pool
) -> None:
    async with running_delivery(
        database_url=database_url, kafka=kafka_settings, pool=pool, repeat_interval_seconds=1.0
    ) as delivery:
        urgent = delivery.request(status=CustodyStatus.RELEASED)
        informational = delivery.request(status=CustodyStatus.TRANSFERRED)
        await delivery.publish(urgent, informational)
        repeats = await eventually(
            lambda: asyncio.sleep(0, delivery.sms_for(urgent.notification_id)),
            check=lambda messages: len(messages) >= 3,
            what="three sends of the urgent notice",
        )
        tokens = {m["reference"] for m in repeats}
        assert len(tokens) == len(repeats)  # each repeat is its own attempt
        assert len(delivery.sms_for(informational.notification_id)) == 1  # informational never repeats

        token = delivery.tokens.sign(urgent.notification_id)
        assert f"{delivery.url}/v1/ack/{token}" in repeats[0]["body"]
        page = await delivery.http.get(f"/v1/ack/{token}")
        assert page.status_code == 200
        assert f'action="{delivery.url}/v1/ack/{token}"' in page.text
        assert await delivery.outcome(urgent.notification_id) is None  # looking at the page acknowledges nothing
        assert (await delivery.http.post("/v1/ack/forged-token")).status_code == 404
        acknowledged = await delivery.http.post(f"/v1/ack/{token}")
        assert acknowledged.status_code == 200
        assert await delivery.outcome(urgent.notification_id) == "acknowledged"

        await asyncio.sleep(1.0)  # an attempt already at the provider may still complete
        count = len(delivery.sms_for(urgent.notification_id))
        await asyncio.sleep(3.0)
        assert len(delivery.sms_for(urgent.notification_id)) == count


async def test_a_template_error_for_one_language_never_blocks_other_notices(
    database_url: str, kafka_settings: KafkaSettings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATE_DIRECTORY, templates)
    (templates / "es" / "status_change.sms.txt").write_text("{{ no_such_variable }} {% if %}")
    async with running_delivery(
        database_url=database_url, kafka=kafka_settings, pool=pool, templates_directory=str(templates)
    ) as delivery:
        broken = delivery.request(language=Language.SPANISH)
        fine = [delivery.request(language=Language.ENGLISH) for _ in range(3)]
        spanish_email = delivery.request(language=Language.SPANISH, channel=Channel.EMAIL)
        await delivery.publish(broken, *fine, spanish_email)
        ids = [r.notification_id for r in (broken, *fine, spanish_email)]
        found = await eventually(
            lambda: outcomes(delivery, ids),
            check=lambda found: (
                len(found) == 5
                and all(v is not None for v in found.values())
                and found[fine[-1].notification_id] == "delivered"
            ),
            what="every notice settled",
        )
        assert found[broken.notification_id] == "failed"
        assert all(found[r.notification_id] == "delivered" for r in fine)
        assert found[spanish_email.notification_id] == "sent"
        history = await delivery.history(broken.notification_id)
        assert history["attempts"][0]["status"] == "technical-failure"
        assert "template" in history["parked_reason"]

        # Parked on the dead-letter topic with its history.
        dlq = kafka_settings.topic("dlq.delivery")
        records = await read_topic(kafka_settings, dlq, until=lambda r: len(r) >= 1)
        parked = decode(records[0].value).data
        assert getattr(parked, "notification_id", None) == broken.notification_id
        attempts = json.loads(header(records[0], "cw-history") or "[]")
        assert [a["status"] for a in attempts] == ["technical-failure"]
        assert header(records[0], "cw-error")


async def test_invalid_events_go_to_the_dead_letter_topic_and_valid_ones_flow_on(
    database_url: str, kafka_settings: KafkaSettings, pool: asyncpg.Pool
) -> None:
    async with running_delivery(database_url=database_url, kafka=kafka_settings, pool=pool) as delivery:
        topic = kafka_settings.topic(NOTIFICATION_REQUESTED.name)
        good = delivery.request()
        await produce_raw(
            kafka_settings,
            topic,
            [
                (b"bad-1", b"not json at all"),
                (
                    b"bad-2",
                    json.dumps(
                        {
                            "specversion": "1.0",
                            "type": "org.custodywatch.notification.requested.v1",
                            "id": "x",
                            "source": "t",
                            "time": "2026-01-01T00:00:00Z",
                            "traceid": "x",
                            "data": {"notification_id": "n"},
                        }
                    ).encode(),
                ),
            ],
        )
        alert = OpsAlert(kind="feed_stale", agency_id="agency-1", message="wrong topic", at=datetime.now(UTC))
        await delivery.publish_events(NOTIFICATION_REQUESTED.name, [("bad-3", alert)])
        await delivery.publish(good)
        await eventually(lambda: delivery.outcome(good.notification_id), check=lambda o: o == "delivered")
        dlq = kafka_settings.topic("dlq.delivery")
        records = await read_topic(kafka_settings, dlq, until=lambda r: len(r) >= 2)
        reasons = {record.key: header(record, "cw-error") or "" for record in records}
        assert "not JSON" in reasons[b"bad-1"]
        assert "notification_id" in reasons[b"bad-2"] or "invalid" in reasons[b"bad-2"]
        records = await read_topic(kafka_settings, dlq, until=lambda r: any(x.key == b"bad-3" for x in r), timeout=40)
        reasons = {record.key: header(record, "cw-error") or "" for record in records}
        assert "does not handle" in reasons[b"bad-3"]


async def test_missed_callbacks_are_reconciled_with_the_provider(
    database_url: str, kafka_settings: KafkaSettings, pool: asyncpg.Pool
) -> None:
    config = SmsSinkConfig(callback_loss_rate=1.0)
    async with running_delivery(
        database_url=database_url, kafka=kafka_settings, pool=pool, sms_config=config, reconcile_after_seconds=1.0
    ) as delivery:
        request = delivery.request()
        await delivery.publish(request)
        await eventually(
            lambda: delivery.outcome(request.notification_id), check=lambda o: o == "delivered", what="reconciled"
        )
        [message] = delivery.sms_for(request.notification_id)
        assert all(callback["result"] == "dropped" for callback in message["callbacks"])


async def test_history_needs_the_operator_token_and_filters_by_subscription_case_and_time(
    database_url: str, kafka_settings: KafkaSettings, pool: asyncpg.Pool
) -> None:
    async with running_delivery(database_url=database_url, kafka=kafka_settings, pool=pool) as delivery:
        mine = delivery.request(case="CR-1")
        theirs = delivery.request(case="CR-2", channel=Channel.EMAIL)
        await delivery.publish(mine, theirs)
        await eventually(
            lambda: outcomes(delivery, [mine.notification_id, theirs.notification_id]),
            check=lambda found: (
                found.get(mine.notification_id) == "delivered" and found.get(theirs.notification_id) == "sent"
            ),
        )
        assert (await delivery.http.get("/v1/notifications")).status_code == 401
        bad = await delivery.http.get("/v1/notifications", headers={"Authorization": "Bearer wrong-token-xxxxxxxx"})
        assert bad.status_code == 401

        async def listed(**params: str) -> list[str]:
            response = await delivery.http.get("/v1/notifications", params=params, headers=delivery.operator_headers())
            assert response.status_code == 200, response.text
            return [n["notification_id"] for n in response.json()["notifications"]]

        assert await listed(subscription_id=mine.subscription_id) == [mine.notification_id]
        assert await listed(case="cr-2") == [theirs.notification_id]
        assert set(await listed(agency_id="agency-1")) == {mine.notification_id, theirs.notification_id}
        assert await listed(status="delivered") == [mine.notification_id]
        future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        assert await listed(since=future) == []
        response = await delivery.http.get(
            "/v1/notifications", params={"since": "yesterday"}, headers=delivery.operator_headers()
        )
        assert response.status_code == 422
        missing = await delivery.http.get("/v1/notifications/n-nope", headers=delivery.operator_headers())
        assert missing.status_code == 404
        everything = await delivery.http.get("/v1/notifications", headers=delivery.operator_headers())
        text = everything.text
        assert "@example.org" not in text
        assert delivery.cipher.decrypt(mine.contact_ciphertext) not in text
        assert Counter(a["channel"] for n in everything.json()["notifications"] for a in n["attempts"]) == {
            "sms": 1,
            "email": 1,
        }


async def test_an_agency_pause_holds_custody_notices_but_not_verification_codes(
    database_url: str, kafka_settings: KafkaSettings, pool: asyncpg.Pool
) -> None:
    async with running_delivery(database_url=database_url, kafka=kafka_settings, pool=pool) as delivery:
        await delivery.publish_agency(paused=True)
        await eventually(
            lambda: delivery.pool.fetchval("SELECT notices_paused FROM agencies"), check=bool, what="paused agency"
        )
        custody = delivery.request(status=CustodyStatus.RELEASED)
        code = delivery.request(kind=NotificationKind.VERIFICATION)
        code = code.model_copy(update={"custody": None, "secret_ciphertext": delivery.cipher.encrypt("482913")})
        await delivery.publish(custody, code)
        [verification] = await eventually(
            lambda: asyncio.sleep(0, delivery.sms_for(code.notification_id)),
            check=lambda messages: len(messages) == 1,
            what="the verification code",
        )
        assert "482913" in verification["body"]
        await asyncio.sleep(1.5)
        assert delivery.sms_for(custody.notification_id) == []

        await delivery.publish_agency(paused=False)
        await eventually(
            lambda: asyncio.sleep(0, delivery.sms_for(custody.notification_id)),
            check=lambda messages: len(messages) == 1,
            what="the held notice, once the pause is lifted",
        )


async def test_a_hard_bounce_disables_the_email_address(
    database_url: str, kafka_settings: KafkaSettings, pool: asyncpg.Pool
) -> None:
    async with running_delivery(database_url=database_url, kafka=kafka_settings, pool=pool) as delivery:
        gone = delivery.request(channel=Channel.EMAIL, contact="gone@example.org")
        delivery.email_sink.configure(bounce_addresses=["gone@example.org"])
        await delivery.publish(gone)
        await eventually(lambda: delivery.outcome(gone.notification_id), check=lambda o: o == "stopped")
        records = await read_topic(
            kafka_settings, kafka_settings.topic(CONTACT_POINT_DISABLED.name), until=lambda r: len(r) >= 1
        )
        disabled = decode(records[0].value).data
        assert isinstance(disabled, ContactPointDisabled)
        assert (disabled.reason, disabled.channel) == ("hard_bounce", Channel.EMAIL)


async def test_a_refusal_of_our_content_is_a_technical_failure_and_leaves_the_address_alone(
    database_url: str, kafka_settings: KafkaSettings, pool: asyncpg.Pool
) -> None:
    async with running_delivery(database_url=database_url, kafka=kafka_settings, pool=pool) as delivery:
        delivery.email_sink.configure(refused_content=["John Example"])
        refused = delivery.request(channel=Channel.EMAIL, contact="victim-kept@example.org")
        await delivery.publish(refused)
        await eventually(lambda: delivery.outcome(refused.notification_id), check=lambda o: o == "failed")
        history = await delivery.history(refused.notification_id)
        assert history["status"] == "technical-failure"
        assert [a["error_code"] for a in history["attempts"]] == ["DATA 550"]
        assert await pool.fetchval("SELECT count(*) FROM disabled_contacts") == 0

        delivery.email_sink.configure(refused_content=[])
        later = delivery.request(
            channel=Channel.EMAIL, contact="victim-kept@example.org", subscription_id=refused.subscription_id
        )
        await delivery.publish(later)
        await eventually(lambda: delivery.outcome(later.notification_id), check=lambda o: o == "sent")


async def test_exhausted_retries_park_on_the_dead_letter_topic_with_their_history(
    database_url: str, kafka_settings: KafkaSettings, pool: asyncpg.Pool
) -> None:
    async with running_delivery(
        database_url=database_url,
        kafka=kafka_settings,
        pool=pool,
        sms_config=SmsSinkConfig(failure_rate=1.0),
        retry_max_attempts=3,
    ) as delivery:
        request = delivery.request()
        await delivery.publish(request)
        await eventually(lambda: delivery.outcome(request.notification_id), check=lambda o: o == "failed")
        history = await delivery.history(request.notification_id)
        assert [a["status"] for a in history["attempts"]] == ["temporary-failure"] * 3
        assert history["status"] == "technical-failure"
        records = await read_topic(kafka_settings, kafka_settings.topic("dlq.delivery"), until=lambda r: len(r) >= 1)
        assert records[0].key == request.notification_id.encode()
        attempts = json.loads(header(records[0], "cw-history") or "[]")
        assert len(attempts) == 3
        assert "gave up after 3 temporary failures" in (header(records[0], "cw-error") or "")
        assert b"+1555" not in (records[0].value or b"")
        assert delivery.sms_sink.messages() == []


async def test_an_sms_reply_acknowledgement_from_kafka_stops_every_open_urgent_notice(
    database_url: str, kafka_settings: KafkaSettings, pool: asyncpg.Pool
) -> None:
    async with running_delivery(
        database_url=database_url, kafka=kafka_settings, pool=pool, repeat_interval_seconds=1.0
    ) as delivery:
        first = delivery.request(status=CustodyStatus.RELEASED)
        second = delivery.request(status=CustodyStatus.ESCAPED, subscription_id=first.subscription_id)
        await delivery.publish(first, second)
        await eventually(
            lambda: asyncio.sleep(0, delivery.sms_for(second.notification_id)),
            check=lambda messages: len(messages) >= 2,
            what="a repeat",
        )
        reply = NoticeAcknowledged(subscription_id=first.subscription_id, channel=Channel.SMS, at=datetime.now(UTC))
        await delivery.publish_events(NOTIFICATION_ACKNOWLEDGED.name, [(first.subscription_id, reply)])
        await eventually(
            lambda: outcomes(delivery, [first.notification_id, second.notification_id]),
            check=lambda found: set(found.values()) == {"acknowledged"},
            what="both acknowledged",
        )
        await asyncio.sleep(1.0)
        counts = [len(delivery.sms_for(r.notification_id)) for r in (first, second)]
        await asyncio.sleep(2.5)
        assert [len(delivery.sms_for(r.notification_id)) for r in (first, second)] == counts


async def test_sms_fails_over_to_the_second_provider_whose_signed_receipts_are_accepted(
    database_url: str, kafka_settings: KafkaSettings, pool: asyncpg.Pool
) -> None:
    async with SmsSink(account_sid="ACbackup", auth_token="backup-auth-token-0123456789") as backup:
        backup_provider = {
            "name": "backup",
            "account_sid": backup.account_sid,
            "auth_token": backup.auth_token,
            "from_number": "+15005550007",
            "base_url": backup.url,
        }
        async with running_delivery(
            database_url=database_url,
            kafka=kafka_settings,
            pool=pool,
            sms_config=SmsSinkConfig(failure_rate=1.0),  # the primary always fails
            backup_sms_providers=[backup_provider],
        ) as delivery:
            request = delivery.request()
            await delivery.publish(request)
            await eventually(lambda: delivery.outcome(request.notification_id), check=lambda o: o == "delivered")
            history = await delivery.history(request.notification_id)
            assert [(a["provider"], a["status"]) for a in history["attempts"]] == [("backup", "delivered")]
            [message] = backup.messages()
            assert message["status_callback"].startswith(f"{delivery.url}/v1/callbacks/sms/failover?ref=")
            assert all(callback["result"] == 200 for callback in message["callbacks"])
            assert delivery.sms_sink.messages() == []


async def test_a_temporary_email_refusal_is_retried_and_then_sent_once(
    database_url: str, kafka_settings: KafkaSettings, pool: asyncpg.Pool
) -> None:
    async with running_delivery(database_url=database_url, kafka=kafka_settings, pool=pool) as delivery:
        delivery.email_sink.configure(tempfail_addresses=["busy@example.org"])
        request = delivery.request(channel=Channel.EMAIL, contact="busy@example.org")
        await delivery.publish(request)
        await eventually(
            lambda: delivery.history(request.notification_id, allow_missing=True),
            check=lambda h: any(a["status"] == "temporary-failure" for a in h.get("attempts", [])),
            what="a 451 refusal",
        )
        delivery.email_sink.configure(tempfail_addresses=[])
        await eventually(lambda: delivery.outcome(request.notification_id), check=lambda o: o == "sent")
        assert len(delivery.email_sink.emails(to="busy@example.org")) == 1
        history = await delivery.history(request.notification_id)
        assert history["attempts"][-1]["status"] == "sent"
        assert history["attempts"][0]["error_code"] == "4.3.0"  # the enhanced status of the RCPT refusal


async def test_the_per_provider_rate_limit_is_respected(
    database_url: str, kafka_settings: KafkaSettings, pool: asyncpg.Pool
) -> None:
    async with running_delivery(
        database_url=database_url, kafka=kafka_settings, pool=pool, sms_rate_per_second=5.0
    ) as delivery:
        requests = [delivery.request() for _ in range(11)]
        await delivery.publish(*requests)
        ids = [r.notification_id for r in requests]
        await eventually(
            lambda: outcomes(delivery, ids),
            check=lambda found: len(found) == 11 and all(v == "delivered" for v in found.values()),
            what="all delivered",
        )
        received = sorted(datetime.fromisoformat(m["received_at"]) for m in delivery.sms_sink.messages())
        # A burst of one second's worth (5), then 5 per second: the last of 11 arrives no sooner than ~1.2 s after.
        assert (received[-1] - received[0]).total_seconds() >= 1.0
