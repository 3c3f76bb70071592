"""A local SMTP server (aiosmtpd) that keeps every message, and a small HTTP app to see them.

- SMTP on ``smtp_port``: every accepted message is parsed and stored (envelope, From, To, Subject, Message-ID, the
  text and HTML parts, all headers, including ``List-Unsubscribe``).
- Recipients in ``bounce_addresses`` are refused at RCPT with ``550 5.1.1`` (a hard bounce); recipients in
  ``tempfail_addresses`` with ``451 4.3.0`` (try again later); senders in ``refused_senders`` at MAIL FROM and
  messages containing one of ``refused_content`` at DATA with ``550 5.7.1`` (a refusal of us, not of the victim).
- Recipients in ``late_bounce_addresses`` are accepted and stored, then bounce later as a relay's do: the sink posts
  a delivery status notification (RFC 3464, ``5.1.1``) to ``bounce_webhook_url``, signed with
  ``bounce_webhook_secret`` (``X-Bounce-Signature``, as delivery's ``/v1/bounces/{sender}`` checks it).
- HTTP on ``http_port``: ``GET /sink/emails`` (optional ``?to=``) lists, ``DELETE /sink/emails`` clears,
  ``GET``/``POST /sink/config`` read and change the addresses above (``EMAIL_SINK_BOUNCE_ADDRESSES`` and
  ``EMAIL_SINK_TEMPFAIL_ADDRESSES``..., comma-separated, set the initial values).

In-process use::

    async with EmailSink(config=EmailSinkConfig(bounce_addresses=["gone@example.org"])) as sink:
        provider = SmtpEmailProvider(..., host=sink.host, port=sink.smtp_port)
        sink.emails()  # what arrived
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import threading
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import formatdate
from typing import Any, cast

import httpx
from aiosmtpd.controller import Controller
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from devservers.ports import free_port
from devservers.sinks import common
from devservers.sinks.common import LocalSink
from devservers.sinks.http_server import add_sink_routes


class EmailSinkConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bounce_addresses: list[str] = Field(default_factory=list, description="Refused with 550 (hard bounce).")
    tempfail_addresses: list[str] = Field(default_factory=list, description="Refused with 451 (temporary).")
    refused_senders: list[str] = Field(default_factory=list, description="MAIL FROM refused with 550 5.7.1.")
    refused_content: list[str] = Field(default_factory=list, description="DATA containing one: 550 5.7.1.")
    late_bounce_addresses: list[str] = Field(
        default_factory=list, description="Accepted, then a signed 5.1.1 DSN is posted to bounce_webhook_url."
    )
    bounce_webhook_url: str | None = None
    bounce_webhook_secret: str | None = None


logger = logging.getLogger(__name__)


def config_from_environment(environ: Mapping[str, str] | None = None) -> EmailSinkConfig:
    """``EMAIL_SINK_BOUNCE_ADDRESSES=gone@example.org,...`` (lists comma-separated) and so on."""
    return common.config_from_environment(EmailSinkConfig, "EMAIL_SINK", os.environ if environ is None else environ)


def delivery_status_notification(original: bytes, *, recipient: str, status: str, diagnostic: str) -> bytes:
    """A relay's DSN (RFC 3464) for one failed recipient of ``original``, returning its headers."""
    headers = original.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode("utf-8", "replace")
    boundary = f"dsn-{uuid.uuid4().hex}"
    report = (
        "From: MAILER-DAEMON@sink.localhost\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        f"Date: {formatdate(usegmt=True)}\n"
        "Auto-Submitted: auto-replied\n"
        "MIME-Version: 1.0\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\n\n'
        f"--{boundary}\nContent-Type: text/plain\n\nYour message could not be delivered.\n\n"
        f"--{boundary}\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; sink.localhost\n\n"
        f"Final-Recipient: rfc822; {recipient}\nAction: failed\nStatus: {status}\n"
        f"Diagnostic-Code: smtp; {diagnostic}\n\n"
        f"--{boundary}\nContent-Type: text/rfc822-headers\n\n{headers}\n\n"
        f"--{boundary}--\n"
    )
    return report.encode()


def bounce_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _part(message: EmailMessage, subtype: str) -> str | None:
    body = message.get_body(preferencelist=(subtype,))
    if body is None:
        return None
    content: str = cast(EmailMessage, body).get_content()
    return content.replace("\r\n", "\n")  # SMTP's line endings, shown as the sender wrote them


def parse_email(raw: bytes, *, mail_from: str, rcpt_tos: list[str]) -> dict[str, Any]:
    """The stored form of one received message."""
    message = BytesParser(policy=policy.default).parsebytes(raw)
    return {
        "id": uuid.uuid4().hex,
        "received_at": datetime.now(UTC).isoformat(),
        "mail_from": mail_from,
        "rcpt_tos": rcpt_tos,
        "from": str(message["From"] or ""),
        "to": str(message["To"] or ""),
        "subject": str(message["Subject"] or ""),
        "message_id": str(message["Message-ID"] or ""),
        "content_type": message.get_content_type(),
        "text": _part(message, "plain"),
        "html": _part(message, "html"),
        "headers": {name: str(value).strip() for name, value in message.items()},
    }


class EmailStore:
    """Shared between the SMTP thread and the HTTP app, hence the lock."""

    def __init__(self, config: EmailSinkConfig) -> None:
        self._lock = threading.Lock()
        self._emails: list[dict[str, Any]] = []
        self.config = config

    def add(self, email: dict[str, Any]) -> None:
        with self._lock:
            self._emails.append(email)

    def received(self, to: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [email for email in self._emails if to is None or to in email["rcpt_tos"]]

    def clear(self) -> None:
        with self._lock:
            self._emails.clear()

    def configure(self, changes: Mapping[str, Any]) -> EmailSinkConfig:
        self.config = EmailSinkConfig.model_validate(self.config.model_dump() | dict(changes))
        return self.config


class SinkSmtpHandler:
    """aiosmtpd handler: refuses configured recipients, stores everything else."""

    def __init__(self, store: EmailStore) -> None:
        self.store = store
        self._posting: set[asyncio.Task[None]] = set()

    async def handle_MAIL(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        if address.lower() in {sender.lower() for sender in self.store.config.refused_senders}:
            return "550 5.7.1 Sender rejected by policy"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        config = self.store.config
        if address.lower() in {bounce.lower() for bounce in config.bounce_addresses}:
            return "550 5.1.1 Requested action not taken: mailbox unavailable"
        if address.lower() in {tempfail.lower() for tempfail in config.tempfail_addresses}:
            return "451 4.3.0 Requested action aborted: try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        raw = envelope.original_content or envelope.content
        if any(marker.encode() in bytes(raw) for marker in self.store.config.refused_content):
            return "550 5.7.1 Message content rejected"
        self.store.add(parse_email(bytes(raw), mail_from=str(envelope.mail_from), rcpt_tos=list(envelope.rcpt_tos)))
        late = {address.lower() for address in self.store.config.late_bounce_addresses}
        for recipient in (address for address in envelope.rcpt_tos if address.lower() in late):
            task = asyncio.create_task(self._post_bounce(bytes(raw), recipient))
            self._posting.add(task)
            task.add_done_callback(self._posting.discard)
        return "250 Message accepted for delivery"

    async def _post_bounce(self, original: bytes, recipient: str) -> None:
        config = self.store.config
        if not (config.bounce_webhook_url and config.bounce_webhook_secret):
            logger.warning("a late bounce is configured but no bounce_webhook_url and secret")
            return
        report = delivery_status_notification(
            original, recipient=recipient, status="5.1.1", diagnostic="550 5.1.1 mailbox unavailable"
        )
        headers = {
            "Content-Type": "message/rfc822",
            "X-Bounce-Signature": bounce_signature(config.bounce_webhook_secret, report),
        }
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                response = await client.post(config.bounce_webhook_url, content=report, headers=headers)
            logger.info("posted a late bounce: HTTP %s", response.status_code)
        except httpx.HTTPError as error:
            logger.warning("could not post a late bounce (%s)", type(error).__name__)


def create_email_sink_app(store: EmailStore) -> FastAPI:
    app = FastAPI(title="Local email sink")
    app.state.store = store

    add_sink_routes(app, "emails", store)
    return app


class EmailSink(LocalSink):
    """SMTP server (its own thread, as aiosmtpd's Controller runs it) plus the HTTP listing in the caller's loop."""

    def __init__(
        self,
        *,
        config: EmailSinkConfig | None = None,
        host: str = "127.0.0.1",
        smtp_port: int | None = None,
        http_port: int | None = None,
    ) -> None:
        self.smtp_port = smtp_port or free_port()
        self.http_port = http_port or free_port()
        self.store = EmailStore(config or EmailSinkConfig())
        super().__init__(create_email_sink_app(self.store), host=host, port=self.http_port)
        self._controller = Controller(SinkSmtpHandler(self.store), hostname=host, port=self.smtp_port)

    def emails(self, to: str | None = None) -> list[dict[str, Any]]:
        return self.store.received(to)

    def configure(self, **changes: Any) -> EmailSinkConfig:
        return self.store.configure(changes)

    def clear(self) -> None:
        self.store.clear()

    async def start(self) -> None:
        self._controller.start()
        await super().start()

    async def stop(self) -> None:
        await super().stop()
        self._controller.stop()
