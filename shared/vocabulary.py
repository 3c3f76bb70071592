"""The canonical words every service agrees on: custody statuses, identifiers, channels, urgency."""

from __future__ import annotations

from enum import StrEnum


class CustodyStatus(StrEnum):
    IN_CUSTODY = "in_custody"
    RELEASED = "released"
    TRANSFERRED = "transferred"
    ESCAPED = "escaped"
    RETURNED_TO_CUSTODY = "returned_to_custody"
    DECEASED = "deceased"
    REMOVED = "removed"
    COURT_DATE_SET = "court_date_set"


class ReleaseReason(StrEnum):
    BOND = "bond"
    OWN_RECOGNISANCE = "own_recognisance"
    SENTENCE_SERVED = "sentence_served"
    PAROLE_SUPERVISION = "parole_supervision"
    COURT_ORDER = "court_order"
    OTHER = "other"


class IdentifierKind(StrEnum):
    CASE_NUMBER = "case_number"
    BOOKING_NUMBER = "booking_number"
    PERSON_NUMBER = "person_number"


class Channel(StrEnum):
    SMS = "sms"
    EMAIL = "email"
    VOICE = "voice"


class Urgency(StrEnum):
    URGENT = "urgent"
    INFORMATIONAL = "informational"


class Language(StrEnum):
    ENGLISH = "en"
    SPANISH = "es"


URGENT_STATUSES: frozenset[CustodyStatus] = frozenset(
    {CustodyStatus.RELEASED, CustodyStatus.ESCAPED, CustodyStatus.REMOVED, CustodyStatus.DECEASED}
)


def urgency_of(status: CustodyStatus) -> Urgency:
    """Safety-relevant changes are urgent: sent at once, any hour, and repeated until acknowledged."""
    return Urgency.URGENT if status in URGENT_STATUSES else Urgency.INFORMATIONAL


def normalise_identifier(value: str) -> str:
    """Agencies write the same number with different case and spacing; compare on one form."""
    return "".join(value.split()).upper()


class ChargeSeverity(StrEnum):
    FELONY = "felony"
    MISDEMEANOR = "misdemeanor"


class ImmigrationStage(StrEnum):
    """Where an immigration case stands; each has a plain-words explanation per language for victims."""

    IN_REMOVAL_PROCEEDINGS = "in_removal_proceedings"
    FINAL_ORDER_OF_REMOVAL = "final_order_of_removal"
    RELEASED_ON_BOND = "released_on_bond"
    RELEASED_ON_SUPERVISION = "released_on_supervision"
    REMOVED = "removed"
    GRANTED_RELIEF = "granted_relief"


class ContactRole(StrEnum):
    VICTIM_ADVOCATE = "victim_advocate"
    CASE_OFFICER = "case_officer"
    HOTLINE = "hotline"


class ReferralCategory(StrEnum):
    COUNSELLING = "counselling"
    LEGAL_AID = "legal_aid"
    SHELTER = "shelter"
    COMPENSATION = "compensation"
    IMMIGRATION_VICTIM_SERVICES = "immigration_victim_services"
    OTHER = "other"
