"""The portal's forms as pydantic models: what a person typed, and what is wrong with it in words' keys
(``error.<field>.<problem>`` in ``templates/<language>/_words.j2``). Contact points are checked by the same domain
functions the JSON API uses."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from pydantic import BaseModel, ConfigDict

from services.subscription.domain.contacts import normalise_email, normalise_phone, normalise_voice_number
from services.subscription.domain.errors import InvalidContactError, InvalidRequestError
from services.subscription.domain.names import name_words
from services.subscription.domain.pin import pin_problem
from services.subscription.domain.subscription import ALL_EVENT_TYPES, validate_timezone
from shared.vocabulary import CustodyStatus, IdentifierKind, Language

MAX_NUMBER = 64
EARLIEST_BIRTH = date(1900, 1, 1)
DEFAULT_QUIET = ("21:00", "07:00")


class FieldError(BaseModel):
    field: str
    key: str


class Form(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class FindForm(Form):
    agency_id: str = ""
    kind: str = ""
    number: str = ""

    def problems(self, agency_ids: set[str]) -> list[FieldError]:
        errors = []
        if self.agency_id not in agency_ids:
            errors.append(FieldError(field="agency_id", key="agency_id.missing"))
        if self.kind not in set(IdentifierKind):
            errors.append(FieldError(field="kind", key="kind.missing"))
        if not self.number:
            errors.append(FieldError(field="number", key="number.missing"))
        elif len(self.number) > MAX_NUMBER:
            errors.append(FieldError(field="number", key="number.too_long"))
        return errors


class NameForm(Form):
    """Last name, and a first name or a date of birth (day, month and year in boxes of their own)."""

    agency_id: str = ""
    last_name: str = ""
    first_name: str = ""
    birth_day: str = ""
    birth_month: str = ""
    birth_year: str = ""

    def birth_date(self) -> date | None:
        """The date of birth given, or None when none (or not a real date) was given."""
        try:
            born = date(int(self.birth_year), int(self.birth_month), int(self.birth_day))
        except ValueError:
            return None
        return born if EARLIEST_BIRTH <= born <= datetime.now(UTC).date() else None

    def problems(self, agency_ids: set[str]) -> list[FieldError]:
        errors = []
        if self.agency_id not in agency_ids:
            errors.append(FieldError(field="agency_id", key="agency_id.missing"))
        if not name_words(self.last_name):
            errors.append(FieldError(field="last_name", key="last_name.missing"))
        birth_given = any((self.birth_day, self.birth_month, self.birth_year))
        if birth_given and self.birth_date() is None:
            errors.append(FieldError(field="birth_day", key="birth_date.invalid"))
        elif not name_words(self.first_name) and not birth_given:
            errors.append(FieldError(field="first_name", key="first_name.missing"))
        return errors


class ContactForm(Form):
    sms: str = ""
    email: str = ""
    voice: str = ""
    pin: str = ""

    def normalised(self, phone_region: str) -> tuple[ContactForm, list[FieldError]]:
        """The contacts as we will store them, or what is wrong with them."""
        errors = []
        sms, email, voice, pin = self.sms, self.email, self.voice, "".join(self.pin.split())
        if not sms and not email and not voice:
            errors.append(FieldError(field="sms", key="sms.missing"))
        if sms:
            try:
                sms = normalise_phone(sms, phone_region)
            except InvalidContactError:
                errors.append(FieldError(field="sms", key="sms.invalid"))
        if email:
            try:
                email = normalise_email(email)
            except InvalidContactError:
                errors.append(FieldError(field="email", key="email.invalid"))
        if voice:
            try:
                voice = normalise_voice_number(voice, phone_region)
            except InvalidContactError:
                errors.append(FieldError(field="voice", key="voice.invalid"))
            errors.extend(pin_errors(pin))
        elif pin:
            errors.append(FieldError(field="pin", key="pin.unused"))
        return ContactForm(sms=sms, email=email, voice=voice, pin=pin), errors


class OptionsForm(Form):
    language: str = ""
    timezone: str = ""
    event_types: list[str] = []
    quiet: str = ""
    quiet_start: str = ""
    quiet_end: str = ""

    def problems(self) -> list[FieldError]:
        errors = []
        if self.language not in set(Language):
            errors.append(FieldError(field="language", key="language.missing"))
        try:
            validate_timezone(self.timezone)
        except InvalidRequestError:
            errors.append(FieldError(field="timezone", key="timezone.invalid"))
        if not self.event_types or not set(self.event_types) <= set(CustodyStatus):
            errors.append(FieldError(field="event_types", key="event_types.missing"))
        if self.quiet not in {"on", "off"}:
            errors.append(FieldError(field="quiet", key="quiet.missing"))
        if self.quiet == "on":
            start, end = _clock(self.quiet_start), _clock(self.quiet_end)
            if start is None:
                errors.append(FieldError(field="quiet_start", key="quiet_start.invalid"))
            if end is None:
                errors.append(FieldError(field="quiet_end", key="quiet_end.invalid"))
            elif start == end:
                errors.append(FieldError(field="quiet_end", key="quiet_end.same"))
        return errors

    def quiet_hours(self) -> tuple[time, time]:
        """Quiet hours as the service takes them: equal start and end mean none (valid forms only)."""
        start, end = _clock(self.quiet_start), _clock(self.quiet_end)
        if self.quiet == "on" and start is not None and end is not None:
            return start, end
        return time(0, 0), time(0, 0)

    def chosen_events(self) -> list[CustodyStatus]:
        return [CustodyStatus(value) for value in self.event_types]

    @classmethod
    def of(
        cls, language: Language, timezone: str, events: tuple[CustodyStatus, ...], quiet: tuple[time, time]
    ) -> OptionsForm:
        off = quiet[0] == quiet[1]
        return cls(
            language=language.value,
            timezone=timezone,
            event_types=[str(status) for status in events],
            quiet="off" if off else "on",
            quiet_start=DEFAULT_QUIET[0] if off else f"{quiet[0]:%H:%M}",
            quiet_end=DEFAULT_QUIET[1] if off else f"{quiet[1]:%H:%M}",
        )


class CodeForm(Form):
    code: str = ""


def pin_errors(pin: str) -> list[FieldError]:
    """What is wrong with the PIN chosen for calls (none: fine), by the registration's rules."""
    if not pin:
        return [FieldError(field="pin", key="pin.missing")]
    return [FieldError(field="pin", key="pin.weak")] if pin_problem(pin) is not None else []


class AddContactForm(Form):
    value: str = ""
    pin: str = ""
    """Only with a number for calls."""

    def typed_pin(self) -> str:
        return "".join(self.pin.split())


class Draft(Form):
    """A registration being filled in, kept encrypted in a cookie between its pages (nothing is stored before
    "check your answers" is confirmed)."""

    agency_id: str = ""
    kind: str = ""
    number: str = ""
    last_name: str = ""
    first_name: str = ""
    birth_day: str = ""
    birth_month: str = ""
    birth_year: str = ""
    sms: str = ""
    email: str = ""
    voice: str = ""
    pin: str = ""
    options: OptionsForm | None = None

    def found(self) -> bool:
        return bool(self.agency_id and self.kind and self.number)

    def reachable(self) -> bool:
        return self.found() and bool(self.sms or self.email or self.voice)


def name_form(draft: Draft) -> NameForm:
    """The name search a registration being filled in holds."""
    return NameForm.model_validate(draft.model_dump(include=set(NameForm.model_fields)))


def _clock(value: str) -> time | None:
    try:
        parsed = time.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(second=0, microsecond=0)


ALL_EVENTS: list[str] = [str(status) for status in ALL_EVENT_TYPES]
