"""Email through SMTP with aiosmtplib (plain, STARTTLS or implicit TLS; optional AUTH).

Each message is multipart/alternative (plain text + HTML). Its ``Message-ID`` is derived from our attempt reference
and recorded on the attempt before the SMTP transaction. SMTP cannot be asked afterwards whether it took a message,
so a resend after a crash in that window may be a duplicate; it carries the same Message-ID, which lets a mail
client recognise it. When the notice has an unsubscribe URL the RFC 8058 one-click headers are added. Never logs
the address or the body.
"""

from __future__ import annotations

import logging
import re
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, parseaddr

import aiosmtplib

from services.delivery.domain import Receipt
from services.delivery.providers.base import (
    OutboundEmail,
    PermanentProviderError,
    ProviderReceipt,
    TemporaryProviderError,
)
from shared.events import DeliveryStatus

logger = logging.getLogger(__name__)

# Refusals of the recipient at RCPT TO that mean the mailbox does not exist or will never accept mail (a hard bounce):
# a basic code without an enhanced one, or an enhanced 5.1.x (address) or 5.2.x (mailbox) status. A refusal of our
# sender (MAIL FROM) or of the content (DATA), or a policy refusal (5.7.x), is no fault of the victim's address.
HARD_BOUNCE_CODES: frozenset[str] = frozenset({"550", "551", "553"})
HARD_BOUNCE_CLASSES: tuple[str, ...] = ("5.1.", "5.2.")

_UNSAFE_ID_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]")
_ENHANCED_STATUS = re.compile(r"\s*([245]\.\d{1,3}\.\d{1,3})\b")


def recipient_code(code: int, message: str) -> str:
    """A RCPT refusal's enhanced status (``5.1.1``) when the reply starts with one, else its basic code."""
    found = _ENHANCED_STATUS.match(message)
    return found.group(1) if found else str(code)


def is_hard_bounce(code: str | None) -> bool:
    """``code`` as the SMTP provider reports a refusal: the enhanced status of a RCPT refusal if it had one, else the
    basic code; refusals at other commands carry the command (``MAIL 550``, ``DATA 554``) and never match."""
    return code is not None and (code in HARD_BOUNCE_CODES or code.startswith(HARD_BOUNCE_CLASSES))


def failure_receipt(code: str | None, *, permanent: bool) -> Receipt:
    """A refusal at hand-off or a later bounce: a hard bounce disables the address; any other permanent refusal is
    no fault of the address (a technical failure); a 4xx is temporary."""
    if is_hard_bounce(code):
        return Receipt(DeliveryStatus.PERMANENT_FAILURE, code, "hard_bounce")
    if permanent:
        return Receipt(DeliveryStatus.TECHNICAL_FAILURE, code)
    return Receipt(DeliveryStatus.TEMPORARY_FAILURE, code)


def message_id_for(reference: str, from_address: str) -> str:
    """``<reference@sender-domain>``: the same attempt always yields the same Message-ID."""
    domain = parseaddr(from_address)[1].rpartition("@")[2] or "custodywatch.localhost"
    return f"<{_UNSAFE_ID_CHARACTERS.sub('-', reference)}@{domain}>"


class SmtpEmailProvider:
    """One SMTP relay; a connection per message keeps failures of one send from leaking into the next."""

    def __init__(
        self,
        *,
        name: str,
        host: str,
        port: int,
        from_address: str,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        use_tls: bool = False,
        timeout: float = 10.0,
    ) -> None:
        if starttls and use_tls:
            raise ValueError("choose either STARTTLS or implicit TLS, not both")
        self.name = name
        self.host = host
        self.port = port
        self.from_address = from_address
        self._username = username
        self._password = password
        self._starttls = starttls
        self._use_tls = use_tls
        self._timeout = timeout

    def message_id(self, reference: str) -> str:
        return message_id_for(reference, self.from_address)

    def build_message(self, message: OutboundEmail) -> EmailMessage:
        email = EmailMessage()
        email["From"] = self.from_address
        email["To"] = Address(addr_spec=message.to)
        email["Subject"] = message.subject
        email["Date"] = formatdate(localtime=False, usegmt=True)
        email["Message-ID"] = message.message_id
        email["Auto-Submitted"] = "auto-generated"
        unsubscribe = [
            f"<{target}>"
            for target in (
                message.unsubscribe_url,
                f"mailto:{message.unsubscribe_mailto}" if message.unsubscribe_mailto else None,
            )
            if target
        ]
        if unsubscribe:
            email["List-Unsubscribe"] = ", ".join(unsubscribe)
        if message.unsubscribe_url:
            email["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        email.set_content(message.text_body)
        email.add_alternative(message.html_body, subtype="html")
        return email

    async def send(self, message: OutboundEmail) -> ProviderReceipt:
        email = self.build_message(message)
        message_id = str(email["Message-ID"])
        try:
            await aiosmtplib.send(
                email,
                hostname=self.host,
                port=self.port,
                username=self._username,
                password=self._password,
                start_tls=self._starttls,
                use_tls=self._use_tls,
                timeout=self._timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as error:
            refusal = error.recipients[0] if error.recipients else None
            code = refusal.code if refusal else 550
            raise self._refused(code, recipient_code(code, refusal.message if refusal else ""), "recipient") from None
        except aiosmtplib.SMTPAuthenticationError as error:
            # Our credentials, not the recipient: never a reason to disable a contact point.
            raise TemporaryProviderError(f"{self.name}: SMTP authentication failed", code=str(error.code)) from None
        except aiosmtplib.SMTPSenderRefused as error:
            raise self._refused(error.code, f"MAIL {error.code}", "our sender") from None
        except aiosmtplib.SMTPDataError as error:
            raise self._refused(error.code, f"DATA {error.code}", "the message") from None
        except aiosmtplib.SMTPResponseException as error:
            raise self._refused(error.code, f"{type(error).__name__} {error.code}", "the message") from None
        except (aiosmtplib.SMTPException, OSError) as error:
            raise TemporaryProviderError(f"{self.name}: SMTP connection failed ({type(error).__name__})") from None
        return ProviderReceipt(provider=self.name, provider_message_id=message_id, status="sent")

    def _refused(self, code: int, reported: str, what: str) -> TemporaryProviderError | PermanentProviderError:
        """``code`` decides temporary (4xx) or permanent (5xx); ``reported`` is the code the domain judges by."""
        logger.info("smtp server refused a message", extra={"provider": self.name, "smtp_code": code})
        reason = f"{self.name}: SMTP {code} refused {what}"
        if 500 <= code < 600:
            return PermanentProviderError(reason, code=reported)
        return TemporaryProviderError(reason, code=reported)

    async def close(self) -> None:
        """Nothing to release: every send opens and closes its own connection."""
