"""The local email sink: SMTP in, parsed messages out over HTTP; bounces and temporary refusals on request."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from email.message import EmailMessage

import aiosmtplib
import httpx
import pytest

from devservers.ports import free_port
from devservers.sinks import EmailSink, EmailSinkConfig
from devservers.sinks.email import config_from_environment
from tests.apps import REPO_ROOT

pytestmark = pytest.mark.integration


@pytest.fixture
async def sink() -> AsyncIterator[EmailSink]:
    async with EmailSink(config=EmailSinkConfig(bounce_addresses=["Gone@Example.org"])) as running:
        yield running


def message(to: str) -> EmailMessage:
    email = EmailMessage()
    email["From"] = "notices@cw.test"
    email["To"] = to
    email["Subject"] = "Hola, señora"
    email["Message-ID"] = "<ref-1@cw.test>"
    email.set_content("texto\n")
    email.add_alternative("<p>texto</p>\n", subtype="html")
    return email


async def test_received_mail_is_listed_parsed_and_cleared(sink: EmailSink) -> None:
    await aiosmtplib.send(message("a@example.org"), hostname=sink.host, port=sink.smtp_port)
    await aiosmtplib.send(message("b@example.org"), hostname=sink.host, port=sink.smtp_port)
    async with httpx.AsyncClient(base_url=sink.url) as client:
        listed = (await client.get("/sink/emails")).json()
        only_b = (await client.get("/sink/emails", params={"to": "b@example.org"})).json()
        assert len(listed) == 2
        assert [email["rcpt_tos"] for email in only_b] == [["b@example.org"]]
        first = listed[0]
        assert first["subject"] == "Hola, señora"
        assert first["message_id"] == "<ref-1@cw.test>"
        assert first["mail_from"] == "notices@cw.test"
        assert (first["text"], first["html"]) == ("texto\n", "<p>texto</p>\n")
        assert first["headers"]["Subject"] == "Hola, señora"
        assert (await client.delete("/sink/emails")).status_code == 204
        assert (await client.get("/sink/emails")).json() == []


async def test_bounce_and_tempfail_addresses_are_refused(sink: EmailSink) -> None:
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as bounced:
        await aiosmtplib.send(message("gone@example.org"), hostname=sink.host, port=sink.smtp_port)
    assert bounced.value.recipients[0].code == 550

    async with httpx.AsyncClient(base_url=sink.url) as client:
        changed = await client.post("/sink/config", json={"tempfail_addresses": ["busy@example.org"]})
        assert changed.json()["tempfail_addresses"] == ["busy@example.org"]
        assert (await client.post("/sink/config", json={"bounce_addresses": "x"})).status_code == 422
        assert (await client.get("/sink/config")).json()["bounce_addresses"] == ["Gone@Example.org"]
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as deferred:
        await aiosmtplib.send(message("busy@example.org"), hostname=sink.host, port=sink.smtp_port)
    assert deferred.value.recipients[0].code == 451
    assert sink.emails() == []


def test_configuration_from_the_environment() -> None:
    config = config_from_environment({"EMAIL_SINK_BOUNCE_ADDRESSES": "a@x.org,b@x.org"})
    assert config.bounce_addresses == ["a@x.org", "b@x.org"]
    assert config.tempfail_addresses == []


async def test_the_command_line_runs_both_sinks_until_terminated() -> None:
    sms_port, smtp_port, http_port = free_port(), free_port(), free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "devservers.sinks",
        "--sms-port",
        str(sms_port),
        "--smtp-port",
        str(smtp_port),
        "--email-http-port",
        str(http_port),
        "--sms-account-sid",
        "ACcli",
        "--sms-auth-token",
        "cli-token",
        cwd=REPO_ROOT,
        env={**os.environ, "SMS_SINK_OPTED_OUT_NUMBERS": "+15005550100"},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient() as client:
            deadline = time.monotonic() + 20
            while True:
                try:
                    await client.get(f"http://127.0.0.1:{http_port}/sink/emails")
                    sms_config = await client.get(f"http://127.0.0.1:{sms_port}/sink/config")
                    break
                except httpx.TransportError:
                    assert process.returncode is None, "the sinks exited during start-up"
                    assert time.monotonic() < deadline, "the sinks did not start"
                    await asyncio.sleep(0.2)
            assert sms_config.json()["opted_out_numbers"] == ["+15005550100"]
            sent = await client.post(
                f"http://127.0.0.1:{sms_port}/2010-04-01/Accounts/ACcli/Messages.json",
                data={"To": "+15005550101", "From": "+15005550006", "Body": "hi"},
                auth=("ACcli", "cli-token"),
            )
            assert sent.status_code == 201
            await aiosmtplib.send(message("c@example.org"), hostname="127.0.0.1", port=smtp_port)
            emails = (await client.get(f"http://127.0.0.1:{http_port}/sink/emails")).json()
            assert [email["rcpt_tos"] for email in emails] == [["c@example.org"]]
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=15) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
