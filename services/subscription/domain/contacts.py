"""Parsing and normalising the contact points victims type in, often in a hurry on a phone."""

from __future__ import annotations

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from phonenumbers import NumberParseException, PhoneNumberType

from services.subscription.domain.errors import InvalidContactError

TEXTABLE_TYPES = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})
MAX_PHONE_INPUT = 40
MAX_EMAIL_INPUT = 254


def normalise_phone(raw: str, default_region: str) -> str:
    """Return the number in E.164, or refuse it with a message saying what is wrong."""
    text = raw.strip()
    if not text or len(text) > MAX_PHONE_INPUT:
        raise InvalidContactError("enter a mobile phone number, for example +1 415 555 2671")
    try:
        number = phonenumbers.parse(text, default_region)
    except NumberParseException:
        raise InvalidContactError("this is not a phone number we can read; include the country code, e.g. +1") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidContactError("this phone number is not valid; check the digits and the country code")
    if phonenumbers.number_type(number) not in TEXTABLE_TYPES:
        raise InvalidContactError("this number cannot receive text messages; enter a mobile number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_voice_number(raw: str, default_region: str) -> str:
    """A number to call (mobile or landline) in E.164, or refused with a message saying what is wrong."""
    text = raw.strip()
    if not text or len(text) > MAX_PHONE_INPUT:
        raise InvalidContactError("enter a phone number to call, for example +1 415 555 2671")
    try:
        number = phonenumbers.parse(text, default_region)
    except NumberParseException:
        raise InvalidContactError("this is not a phone number we can read; include the country code, e.g. +1") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidContactError("this phone number is not valid; check the digits and the country code")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_email(raw: str) -> str:
    """Return the normalised address (domain lower-cased), or refuse it with the validator's reason."""
    text = raw.strip()
    if not text or len(text) > MAX_EMAIL_INPUT:
        raise InvalidContactError("enter an email address, for example name@example.org")
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError as error:
        raise InvalidContactError(f"this email address is not valid: {error}") from None
    return str(result.normalized)


def email_index_form(address: str) -> str:
    """The form used for the blind index: the same mailbox typed in another case finds the same rows."""
    return address.lower()
