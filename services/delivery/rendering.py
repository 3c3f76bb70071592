"""Notices as text: one jinja2 template per notification kind, channel and language, in ``templates/<language>/``.

Files: ``<kind>.sms.txt``; ``<kind>.subject.txt``, ``<kind>.email.txt`` and ``<kind>.email.html`` (autoescaped);
``<kind>.voice.txt`` (the words a call says), read out by ``_call.voice.xml`` (TwiML, autoescaped).
Undefined variables raise (StrictUndefined); any problem with one template becomes :class:`TemplateError` for that
notice alone. A notice says who it is from, what changed, where and when (in the subscriber's time zone), whom to
call, how to stop, and for urgent notices how to acknowledge; never anything about other victims.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2

from shared.events import AgencyProfile, NotificationKind, NotificationRequested
from shared.vocabulary import Language, Urgency

TEMPLATE_DIRECTORY = Path(__file__).parent / "templates"
SMS_SEGMENT_BUDGET = 2
"""Most segments a notice may take."""
SMS_SHORTENINGS: tuple[dict[str, None], ...] = ({"help_url": None}, {"acknowledge_url": None})
"""What a notice over budget loses, in turn, to fit: "More: <link>", then the tap-to-confirm link (replying OK
still confirms). The hotline's number stays."""
BRAND = "Custody Watch"

# GSM 03.38: the basic set costs one septet, the extension set two (escape + character); anything else is UCS-2.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
    "abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

MONTHS: Mapping[Language, tuple[str, ...]] = {
    Language.ENGLISH: ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
    Language.SPANISH: ("ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sep", "oct", "nov", "dic"),
}


ABOUT_A_CASE = frozenset(
    {
        NotificationKind.STATUS_CHANGE,
        NotificationKind.RELEASE_SCHEDULED,
        NotificationKind.RELEASE_REMINDER,
        NotificationKind.COURT_DATE_SCHEDULED,
        NotificationKind.COURT_REMINDER,
        NotificationKind.NOW_HELD_BY,
    }
)
"""Notice kinds that cannot be rendered without the custody facts of their case."""


VOICES: Mapping[Language, tuple[str, str]] = {
    Language.ENGLISH: ("Polly.Joanna", "en-US"),
    Language.SPANISH: ("Polly.Mia", "es-MX"),
}
"""The Twilio ``<Say>`` voice and language of each subscriber language."""
SAY_MAX_BYTES = 3000
"""Twilio reads at most this many UTF-8 bytes in one ``<Say>`` with a Polly voice (warning 13521 beyond)."""
TWIML_MAX_CHARACTERS = 4000
"""The most a Calls API ``Twiml`` parameter may hold."""


class CallStep(StrEnum):
    """Which part of a call the TwiML is for: the notice itself, or an answer of the PIN's action webhook."""

    NOTICE = "notice"
    MACHINE = "machine"
    REPEAT = "repeat"
    WRONG = "wrong"
    ACCEPTED = "accepted"
    LOCKED = "locked"
    GOODBYE = "goodbye"


@dataclass(frozen=True)
class NoticeLinks:
    manage_url: str | None = None
    unsubscribe_url: str | None = None
    acknowledge_url: str | None = None
    verify_url: str | None = None


@dataclass(frozen=True)
class RenderedSms:
    body: str
    segments: int


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text_body: str
    html_body: str


@dataclass(frozen=True)
class RenderedCall:
    spoken: str
    twiml: str


class TemplateError(Exception):
    """A template of one kind and language is missing or broken; other notices are unaffected."""


def sms_segments(text: str) -> int:
    """How many SMS segments ``text`` takes: GSM-7 (160, or 153 per part) or UCS-2 (70, or 67 per part)."""
    if all(character in GSM7_BASIC or character in GSM7_EXTENSION for character in text):
        septets = sum(2 if character in GSM7_EXTENSION else 1 for character in text)
        return 1 if septets <= 160 else -(-septets // 153)
    units = len(text.encode("utf-16-le")) // 2
    return 1 if units <= 70 else -(-units // 67)


def spell_out(value: str) -> str:
    """Letters and digits one by one ("B 2 0 2 6 0 1"), so a voice reads a number as digits, not as millions."""
    return " ".join(character for character in value if character.isalnum())


def _zone(name: str | None) -> tzinfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def format_moment(moment: datetime, language: Language, zone: tzinfo) -> str:
    """``Nov 27, 2026, 2:05 PM EST`` / ``27 nov 2026, 14:05 EST``: short, GSM-7 safe, with the zone spelled out."""
    local = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(zone)
    month = MONTHS[language][local.month - 1]
    zone_name = local.strftime("%Z")
    if language is Language.SPANISH:
        return f"{local.day} {month} {local.year}, {local:%H:%M} {zone_name}"
    hour = local.hour % 12 or 12
    return f"{month} {local.day}, {local.year}, {hour}:{local:%M} {'AM' if local.hour < 12 else 'PM'} {zone_name}"


class NoticeRenderer:
    """Renders notices from one template directory (the package's own, or another one in tests)."""

    def __init__(self, directory: Path = TEMPLATE_DIRECTORY) -> None:
        loader = jinja2.FileSystemLoader(directory)
        strict = jinja2.StrictUndefined
        # SMS (plain text, never HTML): one line in the end; every line break becomes a space, none is swallowed.
        self.sms_environment = jinja2.Environment(
            loader=loader,
            undefined=strict,
            autoescape=False,  # noqa: S701 - plain text
        )
        # Email text part (plain text, never HTML): block tags swallow their line, so the layout stays.
        self.text_environment = jinja2.Environment(
            loader=loader,
            undefined=strict,
            autoescape=False,  # noqa: S701 - plain text
            trim_blocks=True,
            lstrip_blocks=True,
        )
        # Email HTML: everything escaped, including the shared phrase macros when used from HTML.
        self.html_environment = jinja2.Environment(
            loader=loader, undefined=strict, autoescape=True, trim_blocks=True, lstrip_blocks=True
        )

        # Calls: the words as plain text, then TwiML (XML) with every inserted value escaped.
        self.twiml_environment = jinja2.Environment(
            loader=loader, undefined=strict, autoescape=True, trim_blocks=True, lstrip_blocks=True
        )
        # The pages a victim opens from a notice (``pages/<language>/``): HTML, everything escaped.
        self.page_environment = jinja2.Environment(loader=loader, undefined=strict, autoescape=True)

    def _render(self, environment: jinja2.Environment, name: str, context: Mapping[str, Any]) -> str:
        try:
            return environment.get_template(name).render(context).strip()
        except jinja2.TemplateNotFound:
            raise TemplateError(f"no template {name}") from None
        except jinja2.TemplateError as error:
            raise TemplateError(f"template {name}: {error}") from None

    def render_page(self, name: str, language: Language, **context: str) -> str:
        """One of the pages a notice links to (an acknowledgement's confirmation, thanks, problem) in a language."""
        return self._render(
            self.page_environment,
            f"pages/{language.value}/{name}.html",
            {"lang": language.value, "brand": BRAND, **context},
        )

    def render_sms(
        self,
        notice: NotificationRequested,
        agency: AgencyProfile | None,
        links: NoticeLinks,
        *,
        secret: str | None = None,
    ) -> RenderedSms:
        context = notice_context(notice, agency, links, secret=secret)
        body = self._sms_body(notice, context)
        for shorter in SMS_SHORTENINGS:
            if sms_segments(body) <= SMS_SEGMENT_BUDGET:
                break
            context |= shorter
            body = self._sms_body(notice, context)
        return RenderedSms(body=body, segments=sms_segments(body))

    def _sms_body(self, notice: NotificationRequested, context: Mapping[str, Any]) -> str:
        body = " ".join(self._render(self.sms_environment, f"{notice.language}/{notice.kind}.sms.txt", context).split())
        if not body:
            raise TemplateError(f"template {notice.language}/{notice.kind}.sms.txt rendered an empty message")
        return body

    def render_email(
        self,
        notice: NotificationRequested,
        agency: AgencyProfile | None,
        links: NoticeLinks,
        *,
        secret: str | None = None,
    ) -> RenderedEmail:
        context = notice_context(notice, agency, links, secret=secret)
        prefix = f"{notice.language}/{notice.kind}"
        subject = " ".join(self._render(self.text_environment, f"{prefix}.subject.txt", context).split())
        if not subject:
            raise TemplateError(f"template {prefix}.subject.txt rendered an empty subject")
        return RenderedEmail(
            subject=subject,
            text_body=self._render(self.text_environment, f"{prefix}.email.txt", context) + "\n",
            html_body=self._render(self.html_environment, f"{prefix}.email.html", context) + "\n",
        )

    def render_call(
        self,
        notice: NotificationRequested,
        agency: AgencyProfile | None,
        *,
        step: CallStep,
        confirm: bool,
        action_url: str | None,
        secret: str | None = None,
    ) -> RenderedCall:
        """The TwiML of one step of a call; ``confirm`` asks for the PIN (urgent notices answered by a person)."""
        context = voice_context(notice_context(notice, agency, NoticeLinks(), secret=secret))
        spoken = " ".join(
            self._render(self.text_environment, f"{notice.language}/{notice.kind}.voice.txt", context).split()
        )
        if not spoken:
            raise TemplateError(f"template {notice.language}/{notice.kind}.voice.txt rendered nothing to say")
        voice, language_tag = VOICES[notice.language]
        twiml = self._render(
            self.twiml_environment,
            f"{notice.language}/_call.voice.xml",
            {
                "voice": voice,
                "language_tag": language_tag,
                "sender": BRAND + (f", {agency.name}" if agency else ""),
                "spoken": spoken,
                "step": str(step),
                "confirm": confirm,
                "action_url": action_url,
            },
        )
        return RenderedCall(spoken=spoken, twiml=twiml)


def voice_context(context: dict[str, Any]) -> dict[str, Any]:
    """Numbers a caller must note down or key in are read digit by digit."""
    spelled = ("identifier_value", "secret", "hotline_phone", "victim_services_phone", "agency_contact_phone")
    return context | {name: spell_out(context[name]) for name in spelled if context[name]}


def notice_context(
    notice: NotificationRequested, agency: AgencyProfile | None, links: NoticeLinks, *, secret: str | None
) -> dict[str, Any]:
    """Every variable a template may use, always defined (None when unknown), so StrictUndefined catches typos."""
    if notice.kind in ABOUT_A_CASE and notice.custody is None:
        raise TemplateError(f"notice {notice.notification_id}: a {notice.kind} notice without custody facts")
    if notice.kind is NotificationKind.VERIFICATION and not secret:
        raise TemplateError(f"notice {notice.notification_id}: a verification without its code")
    zone = _zone(notice.timezone) or _zone(agency.timezone if agency else None) or UTC
    custody = notice.custody

    def moment(value: datetime | None) -> str | None:
        return format_moment(value, notice.language, zone) if value is not None else None

    return {
        "brand": BRAND,
        "kind": str(notice.kind),
        "urgent": notice.urgency is Urgency.URGENT,
        "agency_name": agency.name if agency else None,
        "agency_contact_phone": agency.contact_phone if agency else None,
        "victim_services_phone": agency.victim_services_phone if agency else None,
        "victim_services_url": agency.victim_services_url if agency else None,
        "identifier_kind": str(custody.identifier.kind) if custody else None,
        "identifier_value": custody.identifier.value if custody else None,
        "person": custody.display_name if custody else None,
        "facility": custody.facility if custody else None,
        "status": str(custody.status) if custody else None,
        "previous_status": str(custody.previous_status) if custody and custody.previous_status else None,
        "release_reason": str(custody.release_reason) if custody and custody.release_reason else None,
        "transfer_destination": custody.transfer_destination if custody else None,
        "court_date": moment(custody.court_date) if custody else None,
        "effective_at": moment(custody.effective_at) if custody else None,
        "manage_url": links.manage_url,
        "unsubscribe_url": links.unsubscribe_url,
        "acknowledge_url": links.acknowledge_url,
        "verify_url": links.verify_url,
        "secret": secret,
        "change": str(notice.change) if notice.change else None,
        "scheduled_for": moment(notice.scheduled_for),
        "court_name": notice.court_name,
        "now_held_by": notice.now_held_by,
        **help_context(agency),
    }


def help_context(agency: AgencyProfile | None) -> dict[str, str | None]:
    """Where an urgent notice sends a victim who needs help now, when the agency has a hotline: "More" is its
    victim services page."""
    hotline = agency.resources.hotline if agency else None
    return {
        "hotline_phone": hotline.phone if hotline else None,
        "help_url": agency.victim_services_url if agency and hotline else None,
    }


@lru_cache(maxsize=1)
def default_renderer() -> NoticeRenderer:
    return NoticeRenderer()


def render_sms(
    notice: NotificationRequested, agency: AgencyProfile | None, links: NoticeLinks, *, secret: str | None = None
) -> RenderedSms:
    return default_renderer().render_sms(notice, agency, links, secret=secret)


def render_email(
    notice: NotificationRequested, agency: AgencyProfile | None, links: NoticeLinks, *, secret: str | None = None
) -> RenderedEmail:
    return default_renderer().render_email(notice, agency, links, secret=secret)


def render_call(
    notice: NotificationRequested,
    agency: AgencyProfile | None,
    *,
    step: CallStep,
    confirm: bool,
    action_url: str | None,
    secret: str | None = None,
) -> RenderedCall:
    return default_renderer().render_call(
        notice, agency, step=step, confirm=confirm, action_url=action_url, secret=secret
    )
