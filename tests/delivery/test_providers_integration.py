"""The provider clients against the local sinks, over real HTTP and SMTP (no Kafka or PostgreSQL needed)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI, Request

from devservers.ports import free_port
from devservers.sinks import EmailSink, EmailSinkConfig, SmsSink, SmsSinkConfig
from devservers.sinks.http_server import EmbeddedHttpServer
from services.delivery.providers.base import (
    OutboundEmail,
    OutboundSms,
    PermanentProviderError,
    ProviderReceipt,
    TemporaryProviderError,
    body_fingerprint,
)
from services.delivery.providers.failover import FailoverSmsProvider
from services.delivery.providers.smtp import SmtpEmailProvider
from services.delivery.providers.twilio.sms import TwilioSmsProvider
from shared.twilio import signature_is_valid, twilio_signature

pytestmark = pytest.mark.integration

VICTIM = "+15005550100"


def twilio_for(sink: SmsSink, name: str = "primary", timeout: float = 5.0) -> TwilioSmsProvider:
    return TwilioSmsProvider(
        name=name,
        account_sid=sink.account_sid,
        auth_token=sink.auth_token,
        from_number="+15005550006",
        base_url=sink.url,
        timeout=timeout,
    )


def sms(body: str = "Custody Watch: test notice", *, to: str = VICTIM, callback: str | None = None) -> OutboundSms:
    return OutboundSms(to=to, body=body, reference=f"att-{uuid.uuid4().hex}", status_callback_url=callback)


@pytest.fixture
async def sms_sink() -> AsyncIterator[SmsSink]:
    async with SmsSink(account_sid="ACprimary", config=SmsSinkConfig(callback_delay_seconds=0.05, seed=1)) as sink:
        yield sink


@pytest.fixture
async def email_sink() -> AsyncIterator[EmailSink]:
    async with EmailSink(config=EmailSinkConfig(bounce_addresses=["gone@example.org"])) as sink:
        yield sink


class CallbackReceiver:
    """A tiny HTTP endpoint collecting status callbacks with their signatures."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[tuple[dict[str, str], str | None]] = []
        app = FastAPI()

        @app.post("/callbacks/{reference}")
        async def callback(request: Request) -> dict[str, str]:
            form = await request.form()
            self.received.append(
                ({key: str(value) for key, value in form.items()}, request.headers.get("X-Twilio-Signature"))
            )
            return {}

        self.server = EmbeddedHttpServer(app, host="127.0.0.1", port=self.port)

    def url(self, reference: str) -> str:
        return f"http://127.0.0.1:{self.port}/callbacks/{reference}"


@asynccontextmanager
async def callback_receiver() -> AsyncIterator[CallbackReceiver]:
    receiver = CallbackReceiver()
    await receiver.server.start()
    try:
        yield receiver
    finally:
        await receiver.server.stop()


async def wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_sms_lands_in_the_sink_with_our_text(sms_sink: SmsSink) -> None:
    provider = twilio_for(sms_sink)
    message = sms("Custody Watch: J. Doe was released. Reply STOP to end")
    receipt = await provider.send(message)
    await provider.close()

    assert receipt.provider == "primary"
    assert receipt.provider_message_id.startswith("SM")
    assert receipt.status == "queued"
    [stored] = sms_sink.messages()
    assert stored["sid"] == receipt.provider_message_id
    assert stored["to"] == VICTIM
    assert stored["from"] == "+15005550006"
    assert stored["body"] == message.body
    assert stored["idempotency_token"] is None  # Twilio has no such key for this call: we send none


async def test_a_sent_message_is_found_in_twilios_list_by_its_fingerprint(sms_sink: SmsSink) -> None:
    provider = twilio_for(sms_sink)
    began = datetime.now(UTC)
    wanted = await provider.send(sms("Custody Watch: the one we look for"))
    for n in range(60):  # more than a page of other messages to the same number, newer than the one we want
        await provider.send(sms(f"Custody Watch: other notice {n}"))
    await provider.send(sms("Custody Watch: the one we look for", to="+15005550199"))  # same text, someone else

    found = await provider.find_sent(VICTIM, began, body_fingerprint("Custody Watch: the one we look for"))
    assert found is not None
    assert (found.provider, found.provider_message_id) == ("primary", wanted.provider_message_id)
    assert found.status in {"queued", "sent", "delivered"}  # its status now, as Twilio reports it
    assert await provider.find_sent(VICTIM, began, body_fingerprint("never sent")) is None
    later = datetime.now(UTC) + timedelta(minutes=10)  # only messages since the attempt began count
    assert await provider.find_sent(VICTIM, later, body_fingerprint("Custody Watch: the one we look for")) is None
    await provider.close()

    unreachable = TwilioSmsProvider(
        name="gone",
        account_sid="AC1",
        auth_token="t",
        from_number="+15005550006",
        base_url=f"http://127.0.0.1:{free_port()}",
    )
    with pytest.raises(TemporaryProviderError):  # cannot tell: the caller must not send
        await unreachable.find_sent(VICTIM, began, body_fingerprint("x"))
    await unreachable.close()


async def test_an_opted_out_number_is_a_permanent_21610(sms_sink: SmsSink) -> None:
    sms_sink.configure(opted_out_numbers=[VICTIM])
    provider = twilio_for(sms_sink)
    with pytest.raises(PermanentProviderError) as refused:
        await provider.send(sms())
    await provider.close()
    assert refused.value.code == "21610"
    assert sms_sink.messages() == []


async def test_an_invalid_number_is_a_permanent_21211(sms_sink: SmsSink) -> None:
    provider = twilio_for(sms_sink)
    with pytest.raises(PermanentProviderError) as refused:
        await provider.send(sms(to="555-0100"))
    await provider.close()
    assert refused.value.code == "21211"


async def test_a_failing_sink_is_a_temporary_error(sms_sink: SmsSink) -> None:
    sms_sink.configure(failure_rate=1.0)
    provider = twilio_for(sms_sink)
    codes = set()
    for _ in range(6):
        with pytest.raises(TemporaryProviderError) as failed:
            await provider.send(sms())
        codes.add(failed.value.code)
    await provider.close()
    assert codes <= {"20500", "20503", "20429"}
    assert sms_sink.messages() == []


async def test_unreachable_provider_and_wrong_credentials_are_temporary(sms_sink: SmsSink) -> None:
    unreachable = TwilioSmsProvider(
        name="down",
        account_sid="ACx",
        auth_token="x",
        from_number="+15005550006",
        base_url=f"http://127.0.0.1:{free_port()}",
    )
    with pytest.raises(TemporaryProviderError) as failed:
        await unreachable.send(sms())
    assert failed.value.code is None  # never reached the provider: safe to fail over
    await unreachable.close()

    wrong_token = TwilioSmsProvider(
        name="p",
        account_sid=sms_sink.account_sid,
        auth_token="wrong",
        from_number="+15005550006",
        base_url=sms_sink.url,
    )
    with pytest.raises(TemporaryProviderError) as refused:
        await wrong_token.send(sms())
    assert refused.value.code == "20003"
    await wrong_token.close()


async def test_a_silent_provider_is_an_ambiguous_timeout(sms_sink: SmsSink) -> None:
    sms_sink.configure(response_delay_seconds=1.0)
    provider = twilio_for(sms_sink, timeout=0.2)
    with pytest.raises(TemporaryProviderError) as failed:
        await provider.send(sms())
    await provider.close()
    assert failed.value.code == "timeout"


async def test_failover_sends_through_the_second_sink_when_the_first_fails(sms_sink: SmsSink) -> None:
    sms_sink.configure(failure_rate=1.0)
    async with SmsSink(account_sid="ACsecondary") as secondary:
        failover = FailoverSmsProvider(
            [twilio_for(sms_sink, "primary"), twilio_for(secondary, "secondary")],
            failure_threshold=2,
            cooldown_seconds=30,
        )
        receipts = [await failover.send(sms()) for _ in range(4)]
        await failover.close()

        assert [receipt.provider for receipt in receipts] == ["secondary"] * 4
        assert not failover.is_healthy("primary")
        assert len(secondary.messages()) == 4
        assert sms_sink.messages() == []


async def test_failover_does_not_move_a_permanent_failure(sms_sink: SmsSink) -> None:
    sms_sink.configure(opted_out_numbers=[VICTIM])
    async with SmsSink(account_sid="ACsecondary") as secondary:
        failover = FailoverSmsProvider([twilio_for(sms_sink, "primary"), twilio_for(secondary, "secondary")])
        with pytest.raises(PermanentProviderError):
            await failover.send(sms())
        await failover.close()
        assert secondary.messages() == []
        assert failover.is_healthy("primary")


async def test_a_slow_provider_loses_its_traffic(sms_sink: SmsSink) -> None:
    sms_sink.configure(response_delay_seconds=0.3)
    async with SmsSink(account_sid="ACsecondary") as secondary:
        failover = FailoverSmsProvider(
            [twilio_for(sms_sink, "primary"), twilio_for(secondary, "secondary")],
            failure_threshold=1,
            slow_threshold_seconds=0.1,
        )
        first = await failover.send(sms())
        second = await failover.send(sms())
        await failover.close()
    assert (first.provider, second.provider) == ("primary", "secondary")


async def test_status_callbacks_arrive_signed_and_a_forgery_does_not_verify(sms_sink: SmsSink) -> None:
    provider = twilio_for(sms_sink)
    async with callback_receiver() as receiver:
        message = sms(callback=receiver.url("att-1"))
        receipt = await provider.send(message)
        await wait_for(lambda: len(receiver.received) >= 2)
        callback_url = receiver.url("att-1")
    await provider.close()

    statuses = [form["MessageStatus"] for form, _ in receiver.received]
    assert statuses == ["sent", "delivered"]
    for form, signature in receiver.received:
        assert form["MessageSid"] == receipt.provider_message_id
        assert signature_is_valid(sms_sink.auth_token, callback_url, form, signature)
        assert not signature_is_valid("someone-elses-token", callback_url, form, signature)
        forged = {**form, "MessageStatus": "delivered" if form["MessageStatus"] != "delivered" else "failed"}
        assert not signature_is_valid(sms_sink.auth_token, callback_url, forged, signature)
    assert twilio_signature(sms_sink.auth_token, callback_url, receiver.received[0][0]) == receiver.received[0][1]


async def test_undelivered_callback_carries_an_error_code_and_status_can_be_fetched(sms_sink: SmsSink) -> None:
    sms_sink.configure(unreachable_numbers=[VICTIM])
    provider = twilio_for(sms_sink)
    async with callback_receiver() as receiver:
        receipt = await provider.send(sms(callback=receiver.url("att-2")))
        await wait_for(lambda: len(receiver.received) >= 2)
    final, _ = receiver.received[-1]
    assert (final["MessageStatus"], final["ErrorCode"]) == ("failed", "30006")
    assert await provider.fetch_status(receipt.provider_message_id) == "failed"
    assert await provider.fetch_status("SMunknown") is None
    await provider.close()


def email_provider(sink: EmailSink) -> SmtpEmailProvider:
    return SmtpEmailProvider(
        name="smtp", host=sink.host, port=sink.smtp_port, from_address="Custody Watch <notices@custodywatch.test>"
    )


def email(to: str = "victim@example.org") -> OutboundEmail:
    reference = f"att-{uuid.uuid4().hex}"
    return OutboundEmail(
        to=to,
        subject="Custody Watch: a change in custody",
        text_body="J. Doe was released.\nUnsubscribe: https://cw.test/u/abc",
        html_body="<p>J. Doe was <strong>released</strong>.</p>",
        reference=reference,
        message_id=f"<{reference}@custodywatch.test>",
        unsubscribe_url="https://cw.test/u/abc",
        unsubscribe_mailto="unsubscribe@custodywatch.test",
    )


async def test_email_lands_in_the_sink_with_both_parts_and_one_click_unsubscribe(email_sink: EmailSink) -> None:
    provider = email_provider(email_sink)
    message = email()
    receipt = await provider.send(message)
    await provider.close()

    [stored] = email_sink.emails()
    assert receipt.provider == "smtp"
    assert receipt.status == "sent"
    assert stored["message_id"] == receipt.provider_message_id
    assert message.reference in receipt.provider_message_id
    assert stored["rcpt_tos"] == ["victim@example.org"]
    assert stored["subject"] == message.subject
    assert stored["content_type"] == "multipart/alternative"
    assert stored["text"].strip() == message.text_body
    assert stored["html"].strip() == message.html_body
    assert stored["headers"]["List-Unsubscribe"] == "<https://cw.test/u/abc>, <mailto:unsubscribe@custodywatch.test>"
    assert stored["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


async def test_email_without_unsubscribe_url_has_no_one_click_header(email_sink: EmailSink) -> None:
    provider = email_provider(email_sink)
    plain = OutboundEmail(
        to="a@example.org", subject="s", text_body="t", html_body="<p>t</p>", reference="r1", message_id="<r1@cw.test>"
    )
    await provider.send(plain)
    [stored] = email_sink.emails()
    assert "List-Unsubscribe" not in stored["headers"]
    assert "List-Unsubscribe-Post" not in stored["headers"]


async def test_a_temporary_refusal_and_a_dead_server_are_temporary(email_sink: EmailSink) -> None:
    email_sink.configure(tempfail_addresses=["busy@example.org"])
    with pytest.raises(TemporaryProviderError) as refused:
        await email_provider(email_sink).send(email("busy@example.org"))
    assert refused.value.code == "4.3.0"

    dead = SmtpEmailProvider(name="smtp", host="127.0.0.1", port=free_port(), from_address="n@cw.test", timeout=2)
    with pytest.raises(TemporaryProviderError):
        await dead.send(email())


class ScriptedProvider:
    """An SmsProvider whose answers a test dictates: to drive the circuit breaker through time without waiting."""

    def __init__(self, name: str, failures: int = 0) -> None:
        self.name = name
        self.failures_left = failures
        self.sent: list[str] = []
        self.bodies: list[str] = []
        self.lookup_fails = False

    async def send(self, message: OutboundSms) -> ProviderReceipt:
        if self.failures_left:
            self.failures_left -= 1
            raise TemporaryProviderError(f"{self.name} down", code="20503")
        self.sent.append(message.reference)
        self.bodies.append(message.body)
        return ProviderReceipt(provider=self.name, provider_message_id=f"{self.name}-{len(self.sent)}")

    async def find_sent(self, to: str, since: datetime, fingerprint: str) -> ProviderReceipt | None:
        if self.lookup_fails:
            raise TemporaryProviderError(f"{self.name} cannot tell", code="timeout")
        for number, body in enumerate(self.bodies, start=1):
            if body_fingerprint(body) == fingerprint:
                return ProviderReceipt(provider=self.name, provider_message_id=f"{self.name}-{number}")
        return None

    async def close(self) -> None:
        return None


async def test_an_open_circuit_closes_again_after_its_cool_down() -> None:
    now = [1000.0]
    primary, secondary = ScriptedProvider("primary", failures=2), ScriptedProvider("secondary")
    failover = FailoverSmsProvider([primary, secondary], failure_threshold=2, cooldown_seconds=60, clock=lambda: now[0])
    assert (await failover.send(sms())).provider == "secondary"  # first failure: still healthy
    assert failover.is_healthy("primary")
    assert (await failover.send(sms())).provider == "secondary"  # second failure: opened
    assert not failover.is_healthy("primary")
    assert (await failover.send(sms())).provider == "secondary"  # not even tried while open
    assert primary.failures_left == 0
    assert primary.sent == []
    now[0] += 61
    assert (await failover.send(sms())).provider == "primary"
    assert failover.get("secondary") is secondary


async def test_when_every_circuit_is_open_the_soonest_to_close_is_probed() -> None:
    now = [0.0]
    first, second = ScriptedProvider("first", failures=1), ScriptedProvider("second", failures=2)
    failover = FailoverSmsProvider([first, second], failure_threshold=1, cooldown_seconds=30, clock=lambda: now[0])
    with pytest.raises(TemporaryProviderError):
        await failover.send(sms())  # both fail, both open
    assert not failover.is_healthy("first")
    assert not failover.is_healthy("second")
    now[0] += 5
    assert (await failover.send(sms())).provider == "first"  # a probe, not a refusal to send
    assert second.failures_left == 1  # the other open one was left alone
    assert failover.is_healthy("first")


async def test_failover_finds_a_message_at_whichever_provider_took_it() -> None:
    primary, secondary = ScriptedProvider("primary", failures=1), ScriptedProvider("secondary")
    failover = FailoverSmsProvider([primary, secondary], failure_threshold=1)
    taken = await failover.send(sms("Custody Watch: moved"))
    assert taken.provider == "secondary"
    since = datetime.now(UTC)
    assert await failover.find_sent(VICTIM, since, body_fingerprint("Custody Watch: moved")) == taken
    assert await failover.find_sent(VICTIM, since, body_fingerprint("other")) is None
    primary.lookup_fails = True
    with pytest.raises(TemporaryProviderError):  # one provider cannot tell: nobody may send
        await failover.find_sent(VICTIM, since, body_fingerprint("other"))


async def test_smtp_refusals_say_where_they_happened_a_hard_bounce_at_rcpt_only(email_sink: EmailSink) -> None:
    provider = email_provider(email_sink)
    with pytest.raises(PermanentProviderError) as bounced:
        await provider.send(email("gone@example.org"))
    assert bounced.value.code == "5.1.1"  # the enhanced status of the RCPT refusal
    email_sink.configure(refused_senders=["notices@custodywatch.test"])
    with pytest.raises(PermanentProviderError) as sender:
        await provider.send(email())
    assert sender.value.code == "MAIL 550"
    email_sink.configure(refused_senders=[], refused_content=["released"])
    with pytest.raises(PermanentProviderError) as content:
        await provider.send(email())
    assert content.value.code == "DATA 550"
    assert email_sink.emails() == []
