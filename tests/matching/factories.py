"""Builders of the events matching consumes: the tests play the ingest and subscription services."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from shared.envelope import encode, new_event
from shared.events import ContactPointState, CustodyStatusChanged, SubjectIdentifier, SubjectSealed, SubscriptionState
from shared.vocabulary import Channel, CustodyStatus, IdentifierKind, Language

AGENCY = "agency-a"
BASE_TIME = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ALL_STATUSES = list(CustodyStatus)


def contact(channel: Channel, *, verified: bool = True, active: bool = True, tag: str = "x") -> ContactPointState:
    masked = "•••-•••-1234" if channel == Channel.SMS else "v•••@example.org"
    return ContactPointState(
        channel=channel, ciphertext=f"gAAAA-{channel}-{tag}", masked=masked, verified=verified, active=active
    )


def subscription(
    subscription_id: str,
    *,
    identifier: SubjectIdentifier | None = None,
    status: str = "active",
    contacts: list[ContactPointState] | None = None,
    event_types: list[CustodyStatus] | None = None,
    version: int = 1,
    agency_id: str = AGENCY,
) -> SubscriptionState:
    return SubscriptionState.model_validate(
        {
            "subscription_id": subscription_id,
            "agency_id": agency_id,
            "identifier": identifier or SubjectIdentifier(kind=IdentifierKind.BOOKING_NUMBER, value="B-1"),
            "status": status,
            "contacts": contacts
            if contacts is not None
            else [contact(Channel.SMS, tag=subscription_id), contact(Channel.EMAIL, tag=subscription_id)],
            "language": Language.ENGLISH,
            "timezone": "America/Chicago",
            "event_types": event_types if event_types is not None else ALL_STATUSES,
            "quiet_hours_start": time(22, 0),
            "quiet_hours_end": time(6, 30),
            "manage_url_ciphertext": f"gAAAA-manage-{subscription_id}",
            "unsubscribe_url_ciphertext": f"gAAAA-unsubscribe-{subscription_id}",
            "version": version,
            "updated_at": BASE_TIME,
        }
    )


def change(
    subject_id: str = "subject-1",
    *,
    status: CustodyStatus = CustodyStatus.RELEASED,
    identifiers: list[SubjectIdentifier] | None = None,
    sequence: int = 0,
    agency_id: str = AGENCY,
) -> CustodyStatusChanged:
    return CustodyStatusChanged(
        agency_id=agency_id,
        subject_id=subject_id,
        identifiers=identifiers or [SubjectIdentifier(kind=IdentifierKind.BOOKING_NUMBER, value="B-1")],
        display_name="DOE, JOHN",
        facility="County Jail",
        status=status,
        previous_status=CustodyStatus.IN_CUSTODY if status != CustodyStatus.IN_CUSTODY else None,
        effective_at=BASE_TIME + timedelta(minutes=sequence),
        agency_record_id=f"rec-{subject_id}-{sequence}",
        feed_batch_id="batch-1",
        received_at=BASE_TIME + timedelta(minutes=sequence, seconds=30),
    )


def sealed(subject_id: str, identifiers: list[SubjectIdentifier], at: datetime) -> SubjectSealed:
    return SubjectSealed(agency_id=AGENCY, subject_id=subject_id, identifiers=identifiers, sealed_at=at)


def custody_message(data: CustodyStatusChanged | SubjectSealed) -> tuple[bytes, bytes, str]:
    """(key, value, event id) of an event as ingest publishes it."""
    event = new_event(data, source="/tests/ingest", subject=f"{data.agency_id}/{data.subject_id}")
    return f"{data.agency_id}/{data.subject_id}".encode(), encode(event), event.id


def subscription_message(state: SubscriptionState) -> tuple[bytes, bytes]:
    event = new_event(state, source="/tests/subscription", subject=state.subscription_id)
    return state.subscription_id.encode(), encode(event)
