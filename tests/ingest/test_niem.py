"""NIEM custody exchanges: each sample maps to canonical records, bad parts are rejected alone, hostile XML refused."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ingest.domain.records import (
    DEFAULT_STATUS_MAP,
    RecordRejectedError,
    StatusMapping,
    normalise_record,
)
from services.ingest.niem import Exchange, NiemDocument, NiemDocumentError, read_niem_document
from shared.vocabulary import CustodyStatus, ReleaseReason

SAMPLES = Path(__file__).parent / "niem"
NC = "http://release.niem.gov/niem/niem-core/3.0/"
J51 = "http://release.niem.gov/niem/domains/jxdm/5.1/"


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def read(body: bytes | str, status_map: dict[str, StatusMapping] | None = None, max_parts: int = 100) -> NiemDocument:
    data = body.encode() if isinstance(body, str) else body
    return read_niem_document(data, status_map=status_map or DEFAULT_STATUS_MAP, max_parts=max_parts)


def records(document: NiemDocument) -> list[dict[str, Any]]:
    assert all(isinstance(part, dict) for part in document.parts), document.parts
    return [part for part in document.parts if isinstance(part, dict)]


def rejection(part: dict[str, Any] | RecordRejectedError) -> RecordRejectedError:
    assert isinstance(part, RecordRejectedError), part
    return part


def booking_report(*bookings: str, extra: str = "", document_id: str | None = "BR-1") -> str:
    identification = (
        f"<nc:DocumentIdentification><nc:IdentificationID>{document_id}</nc:IdentificationID></nc:DocumentIdentification>"
        if document_id
        else ""
    )
    return (
        '<br-doc:BookingReport xmlns:br-doc="http://ojbc.org/IEPD/Exchange/BookingReport/1.0"'
        f' xmlns:nc="{NC}" xmlns:j="{J51}" xmlns:structures="http://release.niem.gov/niem/structures/3.0/">'
        f"{identification}{''.join(bookings)}{extra}</br-doc:BookingReport>"
    )


def booking(body: str = "", *, number: str | None = "B-1", when: str | None = "2026-11-20T22:14:00") -> str:
    date = f"<nc:ActivityDate><nc:DateTime>{when}</nc:DateTime></nc:ActivityDate>" if when else ""
    record = (
        f"<j:BookingAgencyRecordIdentification><nc:IdentificationID>{number}</nc:IdentificationID>"
        "</j:BookingAgencyRecordIdentification>"
        if number
        else ""
    )
    return f"<j:Booking>{date}{record}{body}</j:Booking>"


def release_report(*custodies: str) -> str:
    wrapped = "".join(f"<crr-ext:Custody>{custody}</crr-ext:Custody>" for custody in custodies)
    return (
        '<crr-doc:CustodyReleaseReport xmlns:crr-doc="http://ojbc.org/IEPD/Exchange/CustodyReleaseReport/1.0"'
        ' xmlns:crr-ext="http://ojbc.org/IEPD/Extensions/CustodyReleaseReportExtension/1.0"'
        f' xmlns:nc="{NC}" xmlns:j="{J51}">'
        "<nc:DocumentIdentification><nc:IdentificationID>CRR-1</nc:IdentificationID></nc:DocumentIdentification>"
        f"{wrapped}</crr-doc:CustodyReleaseReport>"
    )


def release(reason: str | None = None, extra: str = "", when: str = "2026-11-26T16:05:00-06:00") -> str:
    reason_text = f"<nc:ActivityReasonText>{reason}</nc:ActivityReasonText>" if reason else ""
    return (
        f"<nc:Release><nc:ActivityDate><nc:DateTime>{when}</nc:DateTime></nc:ActivityDate>{reason_text}{extra}"
        "</nc:Release>"
    )


def status_report(status: str, extra: str = "", created: str | None = "2026-11-24T09:00:41-06:00") -> str:
    creation = (
        f"<nc:DocumentCreationDate><nc:DateTime>{created}</nc:DateTime></nc:DocumentCreationDate>" if created else ""
    )
    return (
        '<cscr-doc:CustodyStatusChangeReport xmlns:cscr-doc="http://ojbc.org/IEPD/Exchange/CustodyStatusChangeReport/1.0"'
        f' xmlns:nc="{NC}" xmlns:j="{J51}">{creation}'
        "<nc:DocumentIdentification><nc:IdentificationID>CSCR-1</nc:IdentificationID></nc:DocumentIdentification>"
        f"{booking()}<j:Detention><nc:SupervisionCustodyStatus>{status}</nc:SupervisionCustodyStatus></j:Detention>"
        f"{extra}</cscr-doc:CustodyStatusChangeReport>"
    )


# --- the samples --------------------------------------------------------------------------------------------------


def test_the_booking_report_sample_maps_each_booking_to_a_booked_record() -> None:
    document = read(sample("booking_report.xml"))
    assert document.exchange is Exchange.BOOKING_REPORT
    assert document.document_id == "BR-2026-1121-0007"
    assert records(document) == [
        {
            "record_id": "BR-2026-1121-0007#1",
            "person_number": "P-778120",
            "booking_number": "B26-004417",
            "case_numbers": ["CR-2026-004512", "T-2026-88410"],
            "name": "Dale R. Whitcombe",
            "facility": "Harlan County Detention Center",
            "status_code": "BOOKED",
            "effective_at": "2026-11-20T22:14:00",
            "date_of_birth": "1988-04-02",
        },
        {
            "record_id": "booking:BKG-99120",
            "person_number": "P-778121",
            "booking_number": "B26-004418",
            "case_numbers": [],
            "name": "Marta Ilse Berger",
            "facility": "HCDC",
            "status_code": "BOOKED",
            "effective_at": "2026-11-21T03:40:00-06:00",
        },
    ]


def test_the_release_report_sample_maps_each_release_with_its_reason() -> None:
    document = read(sample("custody_release_report.xml"))
    assert document.exchange is Exchange.CUSTODY_RELEASE_REPORT
    assert records(document) == [
        {
            "record_id": "release:REL-55102",
            "person_number": "P-778120",
            "booking_number": "B26-004417",
            "case_numbers": ["CR-2026-004512", "T-2026-88410"],
            "name": "Dale R. Whitcombe",
            "facility": "Harlan County Detention Center",
            "status_code": "RELEASED_BOND",
            "effective_at": "2026-11-26T16:05:00-06:00",
        },
        {
            "record_id": "release:REL-55103",
            "person_number": "P-778121",
            "booking_number": "B26-004418",
            "case_numbers": [],
            "name": "Marta Ilse Berger",
            "facility": None,
            "status_code": "RELEASED_OR",
            "effective_at": "2026-11-26T16:11:00-06:00",
        },
    ]


def test_the_release_report_never_carries_the_release_address() -> None:
    assert "Orchard" in sample("custody_release_report.xml").decode()
    assert "Orchard" not in repr(read(sample("custody_release_report.xml")))


def test_the_status_change_sample_maps_its_status_and_court_date() -> None:
    document = read(sample("custody_status_change_report.xml"))
    assert document.exchange is Exchange.CUSTODY_STATUS_CHANGE_REPORT
    assert records(document) == [
        {
            "record_id": "CSCR-2026-1124-0112",
            "person_number": "P-778121",
            "booking_number": "B26-004418",
            "case_numbers": ["CR-2026-004530"],
            "name": "Marta Ilse Berger",
            "facility": "Harlan County Detention Center, Annex B",
            "status_code": "COURT_DATE_SET",
            "effective_at": "2026-11-24T08:55:00-06:00",
            "court_date": "2026-12-15T09:30:00-06:00",
            "court_name": "Harlan County District Court",
        }
    ]


@pytest.mark.parametrize(
    "name", ["booking_report.xml", "custody_release_report.xml", "custody_status_change_report.xml"]
)
def test_every_sample_record_passes_the_json_validation(name: str) -> None:
    now = datetime(2026, 11, 27, tzinfo=UTC)
    zone = ZoneInfo("America/Chicago")
    for raw in records(read(sample(name))):
        record = normalise_record(
            raw, status_map=DEFAULT_STATUS_MAP, timezone=zone, now=now, max_skew=timedelta(minutes=5)
        )
        assert record.record_id == raw["record_id"]
        assert record.identifiers


# --- status codes -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        ("Cash bond", "RELEASED_BOND"),
        ("Released on own recognizance", "RELEASED_OR"),
        ("TIME SERVED", "RELEASED_SENTENCE_SERVED"),
        ("parole", "RELEASED_PAROLE"),
        ("Court order", "RELEASED_COURT_ORDER"),
        ("Released to family", "RELEASED"),
        ("BOOKED", "RELEASED"),  # a reason the map reads as custody is not a release code
        (None, "RELEASED"),
    ],
)
def test_a_release_reason_becomes_a_release_code_of_the_status_map(reason: str | None, code: str) -> None:
    document = read(release_report(booking() + release(reason)))
    assert records(document)[0]["status_code"] == code


def test_the_agencys_own_release_code_wins_and_a_transfer_names_its_recipient() -> None:
    status_map = DEFAULT_STATUS_MAP | {
        "TRN-DOC": StatusMapping(status=CustodyStatus.TRANSFERRED),
        "RBD": StatusMapping(status=CustodyStatus.RELEASED, release_reason=ReleaseReason.BOND),
    }
    recipient = (
        "<nc:ReleaseRecipient><nc:EntityOrganization><nc:OrganizationName>State Department of Corrections"
        "</nc:OrganizationName></nc:EntityOrganization></nc:ReleaseRecipient>"
    )
    transferred = records(read(release_report(booking() + release("TRN-DOC", recipient)), status_map))[0]
    assert transferred["status_code"] == "TRN-DOC"
    assert transferred["transfer_destination"] == "State Department of Corrections"
    assert records(read(release_report(booking() + release("rbd")), status_map))[0]["status_code"] == "RBD"


def test_a_status_change_reads_the_status_text_through_the_status_map() -> None:
    escaped = records(read(status_report("<nc:StatusText>Escaped</nc:StatusText>")))[0]
    assert escaped["status_code"] == "ESCAPED"
    assert escaped["effective_at"] == "2026-11-24T09:00:41-06:00"  # no nc:StatusDate: the report's creation
    returned = records(read(status_report("<nc:StatusDescriptionText>Returned to custody</nc:StatusDescriptionText>")))
    assert returned[0]["status_code"] == "RETURNED_TO_CUSTODY"


def test_an_unknown_status_is_mapped_as_sent_and_rejected_by_the_status_map_check() -> None:
    raw = records(read(status_report("<nc:StatusText>Pretrial</nc:StatusText>")))[0]
    assert raw["status_code"] == "PRETRIAL"
    with pytest.raises(RecordRejectedError, match="unknown status code 'PRETRIAL'"):
        normalise_record(
            raw,
            status_map=DEFAULT_STATUS_MAP,
            timezone=ZoneInfo("UTC"),
            now=datetime(2026, 11, 27, tzinfo=UTC),
            max_skew=timedelta(minutes=5),
        )


def test_a_date_without_a_time_is_midnight_in_the_agency_zone() -> None:
    day = "<j:Booking><nc:ActivityDate><nc:Date>2026-11-20</nc:Date></nc:ActivityDate>"
    body = booking_report(
        booking()
        .replace("<j:Booking>", day, 1)
        .replace("<nc:ActivityDate><nc:DateTime>2026-11-20T22:14:00</nc:DateTime></nc:ActivityDate>", "")
    )
    assert records(read(body))[0]["effective_at"] == "2026-11-20T00:00:00"


# --- per-part rejections ------------------------------------------------------------------------------------------


def test_a_part_without_identifier_is_rejected_alone() -> None:
    document = read(booking_report(booking(number="B-7"), booking(number=None)))
    assert document.parts[0] == records(read(booking_report(booking(number="B-7"))))[0] | {"record_id": "BR-1#1"}
    rejected = rejection(document.parts[1])
    assert rejected.record_id == "BR-1#2"
    assert str(rejected).startswith("no identifier: give j:Booking/j:BookingAgencyRecordIdentification")


def test_a_part_without_or_with_a_bad_date_is_rejected_with_the_element_named() -> None:
    document = read(booking_report(booking(when=None), booking(when="2026-11-31T08:00:00"), booking()))
    assert str(rejection(document.parts[0])) == "no date: give j:Booking/nc:ActivityDate (nc:DateTime or nc:Date)"
    assert "j:Booking/nc:ActivityDate/nc:DateTime '2026-11-31T08:00:00' is not a valid xs:dateTime" in str(
        rejection(document.parts[1])
    )
    assert isinstance(document.parts[2], dict)


def test_a_part_without_any_identification_is_rejected() -> None:
    document = read(booking_report(booking(), document_id=None))
    assert "no identification for this j:Booking" in str(rejection(document.parts[0]))


def test_a_status_change_without_status_is_rejected() -> None:
    document = read(status_report("<nc:StatusDate><nc:Date>2026-11-24</nc:Date></nc:StatusDate>"))
    assert str(rejection(document.parts[0])).startswith("no custody status: give j:Detention/")


def test_a_status_change_without_any_date_is_rejected() -> None:
    document = read(status_report("<nc:StatusText>ESCAPED</nc:StatusText>", created=None))
    assert "no date: give nc:SupervisionCustodyStatus/nc:StatusDate" in str(rejection(document.parts[0]))


def test_a_release_that_cannot_be_tied_to_one_booking_is_rejected_but_others_go_through() -> None:
    document = read(
        release_report(booking(number="B-1") + booking(number="B-2") + release("Bond"), booking() + release())
    )
    assert "holds 2 j:Booking elements" in str(rejection(document.parts[0]))
    assert records(NiemDocument(document.exchange, None, document.parts[1:]))[0]["status_code"] == "RELEASED"


def test_a_custody_element_without_release_is_a_rejected_part() -> None:
    document = read(release_report(booking(), booking() + release()))
    assert str(rejection(document.parts[0])) == "a custody element of this CustodyReleaseReport holds no nc:Release"
    assert isinstance(document.parts[1], dict)
    assert document.parts[1]["record_id"] == "CRR-1#2"


def test_an_old_style_booking_release_is_read_too() -> None:
    old_style = booking(release("Bond").replace("nc:Release", "j:BookingRelease"))
    assert records(read(release_report(old_style)))[0]["status_code"] == "RELEASED_BOND"


# --- whole-document refusals --------------------------------------------------------------------------------------


@contextmanager
def no_file_or_network_access() -> Iterator[list[str]]:
    """Record every file open and network connection attempted inside the block (PEP 578 audit hooks)."""
    seen: list[str] = []
    watching = True

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if watching and (event == "open" or event.startswith(("socket.", "urllib.", "http."))):
            seen.append(f"{event} {args[:1]!r}")

    sys.addaudithook(hook)
    try:
        yield seen
    finally:
        watching = False


def test_the_access_guard_sees_a_file_being_read() -> None:
    with no_file_or_network_access() as accessed:
        sample("booking_report.xml")
    assert any(entry.startswith("open ") for entry in accessed)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("hostile_billion_laughs.xml", "entity declaration 'lol' refused: entities can expand without bound"),
        ("hostile_external_entity.xml", "external entity 'xxe' refused (it names 'file:///etc/passwd')"),
        ("hostile_parameter_entity.xml", "external entity 'remote' refused (it names 'http://127.0.0.1:9/"),
        ("hostile_external_dtd.xml", "external DTD refused (<!DOCTYPE br-doc:BookingReport ... 'http://127.0.0.1:9/"),
    ],
)
def test_hostile_xml_is_refused_without_reading_a_file_or_the_network(name: str, message: str) -> None:
    body = sample(name)
    with no_file_or_network_access() as accessed, pytest.raises(NiemDocumentError) as refused:
        read(body)
    assert accessed == []
    assert refused.value.status_code == 400
    assert str(refused.value).startswith(message)
    assert "root:" not in str(refused.value)


def test_an_xinclude_is_an_ignored_element_never_followed() -> None:
    include = '<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file:///etc/passwd" parse="text"/>'
    with no_file_or_network_access() as accessed:
        document = read(booking_report(booking(include)))
    assert accessed == []
    assert records(document)[0]["booking_number"] == "B-1"
    assert "root:" not in repr(document)


def test_an_internal_dtd_without_entities_is_refused_as_a_dtd() -> None:
    body = "<!DOCTYPE x [<!ELEMENT x ANY>]>" + booking_report(booking())
    with pytest.raises(NiemDocumentError, match=r"^DTD refused \(<!DOCTYPE x>\)") as refused:
        read(body)
    assert refused.value.status_code == 400


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (sample("malformed.xml"), "body is not well-formed XML: mismatched tag at line 8 column "),
        (b'{"records": []}', "body is not well-formed XML: not well-formed (invalid token) at line 1 column 1"),
        (b"<a>\x00</a>", "body is not well-formed XML: not well-formed (invalid token) at line 1 column 4"),
        (b"<?xml version='1.0' encoding='x-no-such-codec'?><a/>", "body cannot be decoded as XML: unknown encoding"),
    ],
)
def test_malformed_xml_is_refused_with_the_parsers_position(body: bytes, message: str) -> None:
    with pytest.raises(NiemDocumentError) as refused:
        read(body)
    assert refused.value.status_code == 400
    assert str(refused.value).startswith(message)


def test_an_unknown_root_namespace_is_refused_with_the_namespace_named() -> None:
    with pytest.raises(NiemDocumentError) as refused:
        read(sample("unknown_namespace.xml"))
    assert refused.value.status_code == 422
    assert "'http://example.org/exchange/BookingReport/2.0'" in str(refused.value)
    with pytest.raises(NiemDocumentError, match="root element Invoice in namespace 'urn:x' is not a custody exchange"):
        read('<i:Invoice xmlns:i="urn:x"/>')


def test_an_older_niem_version_is_refused_with_the_namespace_named() -> None:
    with pytest.raises(NiemDocumentError) as refused:
        read(sample("niem2_booking_report.xml"))
    assert refused.value.status_code == 422
    assert "'http://niem.gov/niem/domains/jxdm/4.0'" in str(refused.value)


def test_a_document_without_custody_part_or_with_too_many_is_refused() -> None:
    with pytest.raises(NiemDocumentError, match="holds no custody part: expected at least one j:Booking") as empty:
        read(booking_report())
    assert empty.value.status_code == 422
    with pytest.raises(NiemDocumentError, match="holds 3 custody parts; the limit is 2") as many:
        read(booking_report(booking(), booking(), booking()), max_parts=2)
    assert many.value.status_code == 413


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(min_value=0, max_value=6000), noise=st.binary(max_size=40))
def test_any_damaged_document_is_read_or_refused_never_crashes(cut: int, noise: bytes) -> None:
    body = sample("custody_release_report.xml")
    damaged = body[:cut] + noise + body[cut + len(noise) :]
    outcome: NiemDocument | NiemDocumentError
    try:
        outcome = read(damaged)
    except NiemDocumentError as refused:
        outcome = refused
    if isinstance(outcome, NiemDocumentError):
        assert outcome.status_code in (400, 413, 422)
    else:
        assert all(isinstance(part, dict | RecordRejectedError) for part in outcome.parts)


def test_charges_are_read_only_when_linked_to_the_booking() -> None:
    """The sample's charge names no booking of the two: nobody's victim is shown it. Linked, it goes to that one."""
    assert all("charges" not in record for record in records(read(sample("booking_report.xml"))))
    linked = (
        sample("booking_report.xml")
        .replace(
            b"</br-doc:BookingReport>",
            b'<j:ActivityChargeAssociation><nc:Activity structures:ref="Booking_02"/>'
            b'<j:Charge structures:ref="Charge_01"/></j:ActivityChargeAssociation></br-doc:BookingReport>',
        )
        .replace(b"<j:ChargeStatute>", b"<j:ChargeSeverityText>Class 3 FELONY</j:ChargeSeverityText><j:ChargeStatute>")
    )
    first, second = records(read(linked))
    assert "charges" not in first
    assert second["charges"] == [{"description": "Aggravated assault", "statute": "13-1204", "severity": "felony"}]
