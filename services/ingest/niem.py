"""NIEM Justice custody exchanges (XML) read into canonical records. Pure: no I/O, no file or network access.

Exchanges accepted, recognised by their root element (the Open Justice Broker Consortium IEPDs published in
github.com/ojbc/main, which build on NIEM 3.0 core and Justice 5.x):

- ``{http://ojbc.org/IEPD/Exchange/BookingReport/1.0}BookingReport``
- ``{http://ojbc.org/IEPD/Exchange/CustodyReleaseReport/1.0}CustodyReleaseReport``
- ``{http://ojbc.org/IEPD/Exchange/CustodyStatusChangeReport/1.0}CustodyStatusChangeReport``

with ``nc`` = niem-core 3.0, ``j`` = Justice (jxdm) 5.0, 5.1 or 5.2 and ``structures`` 3.0 (``structures:id`` /
``structures:ref`` link a reference to its object). Another version of niem-core, jxdm or structures is refused with
422; other NIEM domains (intel, cyfs, hs...) and IEPD extensions may appear and are ignored.

The custody parts come from each ``*:Custody`` child of the root (the IEPDs' extension wrapper), or from the root
itself when it has none. Element names follow the jxdm 5.x and niem-core 3.0 reference schemas
(datypic.com/sc/niem31, niem5.org) and the OJBC instance samples:

==========================  ===============================================================================
part                        one per ``j:Booking`` (BookingReport), ``nc:Release`` or ``j:Booking/j:BookingRelease``
                            (CustodyReleaseReport), ``j:Detention`` (CustodyStatusChangeReport)
record_id                   ``booking:``, ``release:`` or ``status:`` + the part's ``nc:ActivityIdentification/
                            nc:IdentificationID``; without one, the document's ``nc:DocumentIdentification/
                            nc:IdentificationID`` (``#n`` appended when the document holds several parts)
booking_number              ``j:Booking/j:BookingAgencyRecordIdentification/nc:IdentificationID``
person_number               ``j:Booking/j:BookingSubject/j:SubjectIdentification/nc:IdentificationID``
case_numbers                ``nc:CaseDocketID`` and ``nc:CaseTrackingID`` of the ``nc:Case`` linked to the booking
                            or part by ``j:ActivityCaseAssociation`` (or the only case of a custody wrapper holding
                            at most one booking), and ``j:BookingCourtCaseIdentification``
name                        ``nc:PersonName`` (``nc:PersonFullName``, else given, middle, surname and suffix) of the
                            ``nc:Person`` that ``j:BookingSubject/nc:RoleOfPerson`` or ``nc:ReleasePerson`` names
date_of_birth               ``nc:PersonBirthDate/nc:Date`` of that person
facility                    ``nc:FacilityName`` or ``nc:FacilityIdentification`` of ``nc:SupervisionFacility``
                            (status change), ``j:BookingDetentionFacility`` or ``j:BookingFacility``
effective_at                ``nc:ActivityDate`` (``nc:DateTime`` or ``nc:Date``) of the booking or release; for a
                            status change ``nc:SupervisionCustodyStatus/nc:StatusDate``, else the document's
                            ``nc:DocumentCreationDate`` (a status change report is written when the status changes)
status_code                 booking: ``BOOKED`` (or ``IN_CUSTODY``); release: the agency's code for
                            ``nc:ActivityReasonText`` / ``nc:ActivityCategoryText`` when it means a release,
                            ``RELEASED_<reason>``, a common reason word (bond, ROR, time served, parole, court
                            order), else ``RELEASED``; status change: ``nc:StatusText`` or
                            ``nc:StatusDescriptionText`` of ``j:Detention/nc:SupervisionCustodyStatus``, through the
                            agency's status map
transfer_destination        ``nc:ReleaseRecipient`` organisation name, when the status means a transfer
court_date                  ``NextCourtEvent`` (cyfs) or ``j:CourtEvent`` ``nc:ActivityDate``, when the status means a
                            court date
next_court_at               the same, for any other status (case information: verified subscribers only)
court_name                  ``j:CourtEventCourt/j:CourtName`` of that court event
charges                     each ``j:Charge`` linked to the part by ``j:ActivityChargeAssociation`` or
                            ``j:BookingChargeAssociation`` (or of a custody wrapper holding at most one booking):
                            ``j:ChargeDescriptionText``, ``j:ChargeStatute/
                            j:StatuteCodeSectionIdentification`` (or ``j:StatuteCodeIdentification``), and felony or
                            misdemeanor when ``j:ChargeSeverityText`` or ``j:ChargeSeverityLevel/
                            j:SeverityLevelDescriptionText`` says so
==========================  ===============================================================================

Addresses, phone numbers, SSNs and other personal details in the exchange are never read.

A part that cannot be mapped becomes a per-record rejection saying why. The document as a whole is refused
(:class:`NiemDocumentError`) when it is not well-formed XML (400, with line and column), carries a DTD, an entity
declaration or an external reference (400: these are how entity-expansion "billion laughs" and external-entity
attacks work, and no NIEM exchange needs them), has an unknown root or NIEM version (422), holds no custody part
(422) or more parts than a batch may have (413).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any
from xml.etree.ElementTree import Element, ParseError, TreeBuilder
from xml.parsers.expat import ErrorString

from defusedxml.common import DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml.ElementTree import DefusedXMLParser

from services.ingest.domain.records import RecordRejectedError, StatusMapping, normalise_status_code
from shared.vocabulary import CustodyStatus

NC = "http://release.niem.gov/niem/niem-core/3.0/"
JXDM = frozenset(f"http://release.niem.gov/niem/domains/jxdm/5.{minor}/" for minor in (0, 1, 2))
STRUCTURES = "http://release.niem.gov/niem/structures/3.0/"
STRUCTURES_ID = f"{{{STRUCTURES}}}id"
STRUCTURES_REF = f"{{{STRUCTURES}}}ref"
SUPPORTED_VERSIONS = "NIEM 3.0 (niem-core 3.0, structures 3.0) with Justice 5.0, 5.1 or 5.2"
MAX_QUOTED = 120

_NC = frozenset({NC})
_ANY: frozenset[str] = frozenset()


class Exchange(StrEnum):
    BOOKING_REPORT = "BookingReport"
    CUSTODY_RELEASE_REPORT = "CustodyReleaseReport"
    CUSTODY_STATUS_CHANGE_REPORT = "CustodyStatusChangeReport"

    @property
    def namespace(self) -> str:
        return f"http://ojbc.org/IEPD/Exchange/{self.value}/1.0"


EXCHANGES = {f"{{{exchange.namespace}}}{exchange.value}": exchange for exchange in Exchange}
PART_ELEMENTS = {
    Exchange.BOOKING_REPORT: "j:Booking",
    Exchange.CUSTODY_RELEASE_REPORT: "nc:Release",
    Exchange.CUSTODY_STATUS_CHANGE_REPORT: "j:Detention",
}
BOOKED_CODES = ("BOOKED", "IN_CUSTODY")
RELEASE_STATUSES = frozenset({CustodyStatus.RELEASED, CustodyStatus.TRANSFERRED, CustodyStatus.REMOVED})
RELEASE_REASON_WORDS: dict[str, str] = {
    **dict.fromkeys(("BOND", "BAIL", "BONDED OUT", "CASH BOND", "SURETY BOND", "BAIL POSTED"), "RELEASED_BOND"),
    **dict.fromkeys(
        ("ROR", "OR", "OWN RECOGNIZANCE", "OWN RECOGNISANCE", "RELEASED ON OWN RECOGNIZANCE", "PERSONAL RECOGNIZANCE"),
        "RELEASED_OR",
    ),
    **dict.fromkeys(
        ("TIME SERVED", "SENTENCE SERVED", "SENTENCE COMPLETED", "EXPIRATION OF SENTENCE"), "RELEASED_SENTENCE_SERVED"
    ),
    **dict.fromkeys(("PAROLE", "PROBATION", "SUPERVISED RELEASE"), "RELEASED_PAROLE"),
    **dict.fromkeys(("COURT ORDER", "COURT ORDERED", "ORDER OF THE COURT"), "RELEASED_COURT_ORDER"),
}


class NiemDocumentError(ValueError):
    """The document as a whole is refused; ``status_code`` is the HTTP answer (400, 413, 422)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class NiemDocument:
    """The custody parts of one exchange, in document order: each a raw record (``RecordIn`` shape) or a rejection."""

    exchange: Exchange
    document_id: str | None
    parts: list[dict[str, Any] | RecordRejectedError]


# --- safe parsing -------------------------------------------------------------------------------------------------


def _quoted(value: str | None) -> str:
    text = value or ""
    return repr(text if len(text) <= MAX_QUOTED else text[:MAX_QUOTED] + "...")


class _RefusingParser(DefusedXMLParser):
    """defusedxml's parser that also refuses DTDs, after their entity declarations got their own, sharper refusal.

    An internal DTD subset is read on (entities stay forbidden) so that a "billion laughs" or an external entity is
    named as such; anything else with a DTD is refused once the document is read. Nothing is ever fetched.
    """

    def __init__(self) -> None:
        self.doctype: str | None = None
        super().__init__(target=TreeBuilder(), forbid_dtd=True, forbid_entities=True, forbid_external=True)

    def defused_start_doctype_decl(
        self, name: str, sysid: str | None, pubid: str | None, has_internal_subset: bool
    ) -> None:
        self.doctype = name
        if sysid or pubid or not has_internal_subset:
            raise DTDForbidden(name, sysid, pubid)


def _dtd_refusal(name: str, sysid: str | None = None, pubid: str | None = None) -> NiemDocumentError:
    if sysid or pubid:
        return NiemDocumentError(
            400,
            f"external DTD refused (<!DOCTYPE {name} ... {_quoted(sysid or pubid)}>): this service never fetches "
            "files or URLs named in a document, and NIEM exchanges are defined by XML Schema, not DTDs",
        )
    return NiemDocumentError(
        400,
        f"DTD refused (<!DOCTYPE {name}>): NIEM exchanges are defined by XML Schema; a DTD can declare entities "
        "that expand without bound or read external files, so documents with one are not read",
    )


def parse_xml(body: bytes) -> Element:
    """The root element of a well-formed document without DTD, entities or external references."""
    parser = _RefusingParser()
    try:
        parser.feed(body)
        root = parser.close()
    except EntitiesForbidden as entity:
        if entity.sysid or entity.pubid:
            raise NiemDocumentError(
                400,
                f"external entity {entity.name!r} refused (it names {_quoted(entity.sysid or entity.pubid)}): "
                "this service never reads files or URLs named in a document (XXE)",
            ) from None
        raise NiemDocumentError(
            400,
            f"entity declaration {entity.name!r} refused: entities can expand without bound (the 'billion laughs' "
            "attack) and NIEM exchanges never declare any",
        ) from None
    except ExternalReferenceForbidden as reference:
        raise NiemDocumentError(
            400,
            f"external reference refused (it names {_quoted(reference.sysid or reference.pubid)}): this service "
            "never reads files or URLs named in a document",
        ) from None
    except DTDForbidden as dtd:
        raise _dtd_refusal(dtd.name, dtd.sysid, dtd.pubid) from None
    except ParseError as error:
        if parser.doctype is not None:
            raise _dtd_refusal(parser.doctype) from None
        line, column = error.position
        raise NiemDocumentError(
            400, f"body is not well-formed XML: {ErrorString(error.code)} at line {line} column {column + 1}"
        ) from None
    except (LookupError, UnicodeError) as error:
        raise NiemDocumentError(400, f"body cannot be decoded as XML: {error}") from None
    if parser.doctype is not None:
        raise _dtd_refusal(parser.doctype)
    return root


# --- element helpers ----------------------------------------------------------------------------------------------


def _split(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        namespace, _, local = tag[1:].partition("}")
        return namespace, local
    return "", tag


def _is(element: Element, namespaces: frozenset[str], local: str) -> bool:
    namespace, name = _split(element.tag)
    return name == local and (not namespaces or namespace in namespaces)


def _children(element: Element | None, namespaces: frozenset[str], local: str) -> list[Element]:
    if element is None:
        return []
    return [child for child in element if _is(child, namespaces, local)]


def _child(element: Element | None, namespaces: frozenset[str], local: str) -> Element | None:
    found = _children(element, namespaces, local)
    return found[0] if found else None


def _text(element: Element | None) -> str | None:
    if element is None or element.text is None:
        return None
    return " ".join(element.text.split()) or None


def _identification(element: Element | None) -> str | None:
    """The ``nc:IdentificationID`` of an ``nc:IdentificationType`` element."""
    return _text(_child(element, _NC, "IdentificationID"))


def _first_text(element: Element | None, names: Iterable[str]) -> str | None:
    for name in names:
        text = _text(_child(element, _NC, name))
        if text:
            return text
    return None


class _Document:
    """The parsed exchange with its ``structures:id`` index, so references resolve to their objects."""

    def __init__(self, root: Element, exchange: Exchange) -> None:
        self.root = root
        self.exchange = exchange
        self.by_id = {element.get(STRUCTURES_ID, ""): element for element in root.iter() if element.get(STRUCTURES_ID)}

    def resolve(self, element: Element | None) -> Element | None:
        """A reference element's object (``structures:ref``), or the element itself when it holds the content."""
        if element is None:
            return None
        ref = element.get(STRUCTURES_REF)
        return self.by_id.get(ref) if ref else element

    def refers_to(self, element: Element, targets: set[str]) -> bool:
        return element.get(STRUCTURES_REF, "") in targets


# --- whole-document checks ----------------------------------------------------------------------------------------


def _exchange_of(root: Element) -> Exchange:
    exchange = EXCHANGES.get(root.tag)
    if exchange is not None:
        return exchange
    namespace, local = _split(root.tag)
    known = {exchange.value: exchange for exchange in Exchange}
    if local in known:
        raise NiemDocumentError(
            422,
            f"root element {local} is in namespace {namespace or '(none)'!r}; a {local} must be in "
            f"{known[local].namespace!r}",
        )
    names = ", ".join(exchange.value for exchange in Exchange)
    raise NiemDocumentError(
        422, f"root element {local} in namespace {namespace or '(none)'!r} is not a custody exchange; send {names}"
    )


def _unsupported_namespace(namespace: str) -> bool:
    if "niem-core" in namespace:
        return namespace != NC
    if "/jxdm/" in namespace:
        return namespace not in JXDM
    if "niem" in namespace and "/structures/" in namespace:
        return namespace != STRUCTURES
    return False


def _check_versions(root: Element) -> None:
    """Refuse another niem-core, Justice or structures version: its elements would be silently misread."""
    namespaces = {_split(element.tag)[0] for element in root.iter()}
    namespaces |= {_split(name)[0] for element in root.iter() for name in element.attrib}
    unsupported = sorted(namespace for namespace in namespaces if _unsupported_namespace(namespace))
    if unsupported:
        raise NiemDocumentError(
            422, f"unsupported NIEM namespace {unsupported[0]!r}: this endpoint reads {SUPPORTED_VERSIONS}"
        )


# --- mapping ------------------------------------------------------------------------------------------------------


def _parse_when(element: Element | None, where: str) -> str | None:
    """ISO text of an ``nc:DateType`` element (date-only becomes midnight), None when absent; invalid is rejected."""
    if element is None:
        return None
    date_time = _text(_child(element, _NC, "DateTime"))
    if date_time is not None:
        try:
            return datetime.fromisoformat(date_time).isoformat()
        except ValueError:
            raise RecordRejectedError(f"{where}/nc:DateTime {_quoted(date_time)} is not a valid xs:dateTime") from None
    day = _text(_child(element, _NC, "Date"))
    if day is not None:
        try:
            return datetime.combine(date.fromisoformat(day), datetime.min.time()).isoformat()
        except ValueError:
            raise RecordRejectedError(f"{where}/nc:Date {_quoted(day)} is not a valid xs:date") from None
    return None


def _person_name(person: Element | None) -> str | None:
    name = _child(person, _NC, "PersonName")
    full = _text(_child(name, _NC, "PersonFullName"))
    if full:
        return full
    parts = [
        _text(_child(name, _NC, local))
        for local in ("PersonGivenName", "PersonMiddleName", "PersonSurName", "PersonNameSuffixText")
    ]
    return " ".join(part for part in parts if part) or None


def _birth_date(person: Element | None) -> str | None:
    return _text(_child(_child(person, _NC, "PersonBirthDate"), _NC, "Date"))


def _facility_name(facility: Element | None) -> str | None:
    return _text(_child(facility, _NC, "FacilityName")) or _identification(
        _child(facility, _NC, "FacilityIdentification")
    )


def _code_in_map(candidates: Iterable[str], status_map: Mapping[str, StatusMapping]) -> str | None:
    for candidate in candidates:
        code = normalise_status_code(candidate)
        if code and code in status_map:
            return code
    return None


def _as_code(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "_", text).strip("_").upper()


def _release_code(release: Element, status_map: Mapping[str, StatusMapping]) -> str:
    """The agency's code for the release's reason when it means a release, a common reason word, else RELEASED."""
    for reason in (
        _text(_child(release, _NC, "ActivityReasonText")),
        _text(_child(release, _NC, "ActivityCategoryText")),
    ):
        if not reason:
            continue
        words = " ".join(re.sub(r"[^0-9A-Za-z]+", " ", reason).upper().split())
        candidates = [reason, _as_code(reason), f"RELEASED_{_as_code(reason)}", RELEASE_REASON_WORDS.get(words, "")]
        for candidate in candidates:
            code = _code_in_map([candidate], status_map)
            if code is not None and status_map[code].status in RELEASE_STATUSES:
                return code
    return "RELEASED"


class _Part:
    """One custody part being mapped: its activity element, its booking and its custody scope."""

    def __init__(self, document: _Document, scope: Element, kind: str, activity: Element) -> None:
        self.document = document
        self.scope = scope
        self.kind = kind
        self.activity = activity
        self.booking: Element | None = None

    def _booking(self) -> Element | None:
        if self.kind == "booking":
            return self.activity
        owner = self._bookings_with_release().get(self.activity)
        if owner is not None:
            return owner
        bookings = _children(self.scope, JXDM, "Booking")
        if len(bookings) > 1:
            raise RecordRejectedError(
                f"this custody part's {PART_ELEMENTS[self.document.exchange]} cannot be tied to one booking: "
                f"its custody element holds {len(bookings)} j:Booking elements; send one custody element per booking"
            )
        return bookings[0] if bookings else None

    def _bookings_with_release(self) -> dict[Element, Element]:
        return {
            release: booking
            for booking in _children(self.scope, JXDM, "Booking")
            for release in _children(booking, JXDM, "BookingRelease")
        }

    def record_id(self, position: int, total: int) -> str:
        activity_id = _identification(_child(self.activity, _NC, "ActivityIdentification"))
        if activity_id:
            return f"{self.kind}:{activity_id}"
        document_id = _identification(_child(self.document.root, _NC, "DocumentIdentification"))
        if document_id:
            return document_id if total == 1 else f"{document_id}#{position}"
        element = PART_ELEMENTS[self.document.exchange]
        raise RecordRejectedError(
            f"no identification for this {element}: give its nc:ActivityIdentification/nc:IdentificationID or the "
            "document's nc:DocumentIdentification/nc:IdentificationID"
        )

    def subject_person(self) -> Element | None:
        subject = _child(self.booking, JXDM, "BookingSubject")
        person = self.document.resolve(_child(subject, _NC, "RoleOfPerson"))
        if person is None and self.kind == "release":
            person = self.document.resolve(_child(self.activity, _NC, "ReleasePerson"))
        return person

    def case_numbers(self) -> list[str]:
        linked_ids = {
            element.get(STRUCTURES_ID, "") for element in (self.booking, self.activity) if element is not None
        } - {""}
        cases: list[Element] = []
        for association in self.document.root.iter():
            if not _is(association, JXDM, "ActivityCaseAssociation"):
                continue
            activities = _children(association, _NC, "Activity")
            if any(self.document.refers_to(activity, linked_ids) for activity in activities):
                cases += [case for case in map(self.document.resolve, _children(association, _NC, "Case")) if case]
        if len(_children(self.scope, JXDM, "Booking")) <= 1:
            cases += _children(self.scope, _NC, "Case")
        numbers = [_text(_child(case, _NC, local)) for case in cases for local in ("CaseDocketID", "CaseTrackingID")]
        numbers += [_identification(found) for found in _children(self.booking, JXDM, "BookingCourtCaseIdentification")]
        return list(dict.fromkeys(number for number in numbers if number))

    def facility(self) -> str | None:
        if self.kind == "status":
            own = _facility_name(_child(self.activity, _NC, "SupervisionFacility"))
            if own:
                return own
        return _facility_name(_child(self.booking, JXDM, "BookingDetentionFacility")) or _facility_name(
            _child(self.booking, JXDM, "BookingFacility")
        )

    def status_code(self, status_map: Mapping[str, StatusMapping]) -> str:
        if self.kind == "booking":
            return _code_in_map(BOOKED_CODES, status_map) or BOOKED_CODES[0]
        if self.kind == "release":
            return _release_code(self.activity, status_map)
        text = _first_text(self._custody_status(), ("StatusText", "StatusDescriptionText"))
        if text is None:
            raise RecordRejectedError(
                "no custody status: give j:Detention/nc:SupervisionCustodyStatus/nc:StatusText "
                "(or nc:StatusDescriptionText) with a code of the agency's status map"
            )
        return _code_in_map([text, _as_code(text)], status_map) or normalise_status_code(text)

    def _custody_status(self) -> Element | None:
        return _child(self.activity, _NC, "SupervisionCustodyStatus")

    def effective_at(self) -> str:
        if self.kind == "status":
            status = _child(self._custody_status(), _NC, "StatusDate")
            created = _child(self.document.root, _NC, "DocumentCreationDate")
            when = _parse_when(status, "nc:StatusDate") or _parse_when(created, "nc:DocumentCreationDate")
            missing = "nc:SupervisionCustodyStatus/nc:StatusDate or the document's nc:DocumentCreationDate"
        else:
            where = f"{PART_ELEMENTS[self.document.exchange]}/nc:ActivityDate"
            if _is(self.activity, JXDM, "BookingRelease"):
                where = "j:BookingRelease/nc:ActivityDate"
            when = _parse_when(_child(self.activity, _NC, "ActivityDate"), where)
            missing = f"{where} (nc:DateTime or nc:Date)"
        if when is None:
            raise RecordRejectedError(f"no date: give {missing}")
        return when

    def court_date(self) -> str | None:
        events = _children(self.scope, _ANY, "NextCourtEvent") + _children(self.scope, JXDM, "CourtEvent")
        for event in events:
            when = _parse_when(_child(event, _NC, "ActivityDate"), f"{_split(event.tag)[1]}/nc:ActivityDate")
            if when is not None:
                return when
        return None

    def court_name(self) -> str | None:
        for event in _children(self.scope, _ANY, "NextCourtEvent") + _children(self.scope, JXDM, "CourtEvent"):
            name = _text(_child(_child(event, JXDM, "CourtEventCourt"), JXDM, "CourtName"))
            if name:
                return name
        return None

    def _charge_elements(self) -> list[Element]:
        """Charges linked to this booking or part (``j:ActivityChargeAssociation`` / ``j:BookingChargeAssociation``),
        or those of a custody wrapper holding at most one booking: another person's charges are never taken."""
        linked_ids = {
            element.get(STRUCTURES_ID, "") for element in (self.booking, self.activity) if element is not None
        } - {""}
        charges: list[Element] = []
        for association in self.document.root.iter():
            if not (
                _is(association, JXDM, "ActivityChargeAssociation")
                or _is(association, JXDM, "BookingChargeAssociation")
            ):
                continue
            activities = _children(association, _NC, "Activity") + _children(association, JXDM, "Booking")
            if any(self.document.refers_to(activity, linked_ids) for activity in activities):
                charges += [c for c in map(self.document.resolve, _children(association, JXDM, "Charge")) if c]
        if len(_children(self.scope, JXDM, "Booking")) <= 1:
            charges += [c for c in _children(self.scope, JXDM, "Charge") if c.get(STRUCTURES_REF) is None]
        return list(dict.fromkeys(charges))

    def charges(self) -> list[dict[str, str | None]]:
        found: list[dict[str, str | None]] = []
        for charge in self._charge_elements():
            description = _text(_child(charge, JXDM, "ChargeDescriptionText"))
            if not description:
                continue
            statute = _child(charge, JXDM, "ChargeStatute")
            section = _identification(_child(statute, JXDM, "StatuteCodeSectionIdentification"))
            level = _child(charge, JXDM, "ChargeSeverityLevel")
            severity_text = _text(_child(charge, JXDM, "ChargeSeverityText")) or _text(
                _child(level, JXDM, "SeverityLevelDescriptionText")
            )
            words = (severity_text or "").lower()
            severity = next((name for name in ("felony", "misdemeanor") if name in words), None)
            code = section or _identification(_child(statute, JXDM, "StatuteCodeIdentification"))
            found.append({"description": description, "statute": code, "severity": severity})
        return found

    def transfer_destination(self) -> str | None:
        releases = [self.activity] if self.kind == "release" else _children(self.scope, _NC, "Release")
        for release in releases:
            recipient = self.document.resolve(_child(release, _NC, "ReleaseRecipient"))
            organisation = self.document.resolve(_child(recipient, _NC, "EntityOrganization"))
            name = _text(_child(organisation, _NC, "OrganizationName"))
            if name:
                return name
        return None

    def record(self, status_map: Mapping[str, StatusMapping], position: int, total: int) -> dict[str, Any]:
        record_id = self.record_id(position, total)
        try:
            self.booking = self._booking()
            return self._record(record_id, status_map)
        except RecordRejectedError as rejected:
            rejected.record_id = record_id
            raise

    def _record(self, record_id: str, status_map: Mapping[str, StatusMapping]) -> dict[str, Any]:
        booking_number = _identification(_child(self.booking, JXDM, "BookingAgencyRecordIdentification"))
        subject = _child(self.booking, JXDM, "BookingSubject")
        person_number = _identification(_child(subject, JXDM, "SubjectIdentification"))
        case_numbers = self.case_numbers()
        if not (booking_number or person_number or case_numbers):
            raise RecordRejectedError(
                "no identifier: give j:Booking/j:BookingAgencyRecordIdentification, "
                "j:BookingSubject/j:SubjectIdentification or an nc:Case with nc:CaseDocketID"
            )
        status_code = self.status_code(status_map)
        mapping = status_map.get(status_code)
        record: dict[str, Any] = {
            "record_id": record_id,
            "person_number": person_number,
            "booking_number": booking_number,
            "case_numbers": case_numbers,
            "name": _person_name(self.subject_person()),
            "facility": self.facility(),
            "status_code": status_code,
            "effective_at": self.effective_at(),
        }
        birth_date = _birth_date(self.subject_person())
        if birth_date is not None:
            record["date_of_birth"] = birth_date
        if mapping is not None and mapping.status is CustodyStatus.TRANSFERRED:
            record["transfer_destination"] = self.transfer_destination()
        if mapping is not None and mapping.status is CustodyStatus.COURT_DATE_SET:
            record["court_date"] = self.court_date()
        shared: dict[str, Any] = {"court_name": self.court_name(), "charges": self.charges()}
        if mapping is None or mapping.status is not CustodyStatus.COURT_DATE_SET:
            shared["next_court_at"] = self.court_date()
        return record | {name: value for name, value in shared.items() if value}


def _scopes(root: Element) -> list[Element]:
    """The custody wrappers (``*:Custody`` children of the root), or the root itself."""
    return _children(root, _ANY, "Custody") or [root]


def _parts_of(document: _Document) -> list[tuple[Element, str, Element | None]]:
    """(scope, kind, activity) of each custody part; a scope without one yields an empty part (a rejection)."""
    found: list[tuple[Element, str, Element | None]] = []
    scopes = _scopes(document.root)
    for scope in scopes:
        if document.exchange is Exchange.BOOKING_REPORT:
            activities = [("booking", booking) for booking in _children(scope, JXDM, "Booking")]
        elif document.exchange is Exchange.CUSTODY_RELEASE_REPORT:
            releases = _children(scope, _NC, "Release")
            releases += [
                release
                for booking in _children(scope, JXDM, "Booking")
                for release in _children(booking, JXDM, "BookingRelease")
            ]
            activities = [("release", release) for release in releases]
        else:
            activities = [("status", detention) for detention in _children(scope, JXDM, "Detention")]
        if activities:
            found += [(scope, kind, activity) for kind, activity in activities]
        elif scope is not document.root:
            found.append((scope, "empty", None))
    return found


def read_niem_document(body: bytes, *, status_map: Mapping[str, StatusMapping], max_parts: int) -> NiemDocument:
    """The custody parts of a NIEM exchange, each mapped to a raw record or rejected with the reason.

    Raises :class:`NiemDocumentError` when the document as a whole cannot be read.
    """
    root = parse_xml(body)
    exchange = _exchange_of(root)
    _check_versions(root)
    document = _Document(root, exchange)
    found = _parts_of(document)
    element = PART_ELEMENTS[exchange]
    if not found:
        raise NiemDocumentError(422, f"the {exchange.value} holds no custody part: expected at least one {element}")
    if len(found) > max_parts:
        raise NiemDocumentError(
            413, f"the {exchange.value} holds {len(found)} custody parts; the limit is {max_parts} per document"
        )
    parts: list[dict[str, Any] | RecordRejectedError] = []
    for position, (scope, kind, activity) in enumerate(found, start=1):
        if activity is None:
            parts.append(RecordRejectedError(f"a custody element of this {exchange.value} holds no {element}"))
            continue
        try:
            parts.append(_Part(document, scope, kind, activity).record(status_map, position, len(found)))
        except RecordRejectedError as rejected:
            parts.append(rejected)
    document_id = _identification(_child(root, _NC, "DocumentIdentification"))
    return NiemDocument(exchange, document_id, parts)
