"""All of matching's SQL: subscriptions by case, custody state by subject, handled events, notification requests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.matching.domain import CaseKey, ChangePosition, KnownCustodyState, case_key
from services.matching.schedule import Reminder
from shared.db import Connection
from shared.events import (
    AgencyProfile,
    CustodyStatusChanged,
    NotificationKind,
    NotificationRequested,
    SubscriptionState,
)
from shared.vocabulary import IdentifierKind


@dataclass(frozen=True)
class SourcePosition:
    """Where a consumed event was first read: a replay of the same message has the same position."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class StoredNotification:
    notification_id: str
    value: bytes


async def claim_event(connection: Connection, event_id: str, position: SourcePosition) -> SourcePosition | None:
    """Record that matching applies ``event_id``; None when claimed now, else the position it was first read at."""
    claimed = await connection.fetchval(
        "INSERT INTO handled_events (event_id, source_topic, source_partition, source_offset)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true",
        event_id,
        position.topic,
        position.partition,
        position.offset,
    )
    if claimed:
        return None
    row = await connection.fetchrow(
        "SELECT source_topic, source_partition, source_offset FROM handled_events WHERE event_id = $1", event_id
    )
    if row is None:  # only if someone deleted it between the two statements
        raise RuntimeError(f"handled event {event_id} vanished")
    return SourcePosition(row["source_topic"], row["source_partition"], row["source_offset"])


# Subscriptions


async def load_subscription(connection: Connection, subscription_id: str) -> SubscriptionState | None:
    """The stored state, locked until the transaction ends so two versions never race."""
    state: Any = await connection.fetchval(
        "SELECT state FROM subscriptions WHERE subscription_id = $1 FOR UPDATE", subscription_id
    )
    return None if state is None else SubscriptionState.model_validate(state)


async def save_subscription(connection: Connection, state: SubscriptionState) -> None:
    agency_id, kind, value = case_key(state.agency_id, state.identifier)
    await connection.execute(
        "INSERT INTO subscriptions"
        " (subscription_id, agency_id, identifier_kind, identifier_value, status, version, state, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, now())"
        " ON CONFLICT (subscription_id) DO UPDATE SET agency_id = EXCLUDED.agency_id,"
        "  identifier_kind = EXCLUDED.identifier_kind, identifier_value = EXCLUDED.identifier_value,"
        "  status = EXCLUDED.status, version = EXCLUDED.version, state = EXCLUDED.state, updated_at = now()"
        " WHERE subscriptions.version < EXCLUDED.version",
        state.subscription_id,
        agency_id,
        str(kind),
        value,
        state.status,
        state.version,
        state.model_dump(mode="json"),
    )


async def active_subscriptions_for(connection: Connection, keys: Sequence[CaseKey]) -> list[SubscriptionState]:
    """Active subscriptions on any of ``keys`` (one subscription once, even if it matches several)."""
    if not keys:
        return []
    rows = await connection.fetch(
        "SELECT DISTINCT s.subscription_id, s.state FROM subscriptions s"
        " JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(agency_id, kind, value)"
        "   ON s.agency_id = k.agency_id AND s.identifier_kind = k.kind AND s.identifier_value = k.value"
        " WHERE s.status = 'active' ORDER BY s.subscription_id",
        [key[0] for key in keys],
        [str(key[1]) for key in keys],
        [key[2] for key in keys],
    )
    return [SubscriptionState.model_validate(row["state"]) for row in rows]


# Custody state


@dataclass(frozen=True)
class SubjectHistory:
    """What a new change of one subject is compared with: its newest applied change and when it was sealed."""

    newest: ChangePosition | None
    sealed_at: datetime | None


async def lock_subject(connection: Connection, agency_id: str, subject_id: str) -> SubjectHistory:
    """The subject's history, its row locked until the transaction ends (created if new), so that comparing a
    change with the newest applied one and replacing it is one step even with two replicas."""
    row = await connection.fetchrow(
        "INSERT INTO custody_subjects (agency_id, subject_id, updated_at) VALUES ($1, $2, now())"
        " ON CONFLICT (agency_id, subject_id) DO UPDATE SET updated_at = custody_subjects.updated_at"
        " RETURNING custody_event_id, effective_at, sequence, received_at, sealed_at",
        agency_id,
        subject_id,
    )
    if row is None:  # RETURNING always yields the row
        raise RuntimeError(f"custody subject {agency_id}/{subject_id} was not locked")
    newest: ChangePosition | None = None
    if row["custody_event_id"] is not None:
        sequence = -1 if row["sequence"] is None else int(row["sequence"])
        newest = (row["effective_at"], sequence, row["received_at"], row["custody_event_id"])
    return SubjectHistory(newest=newest, sealed_at=row["sealed_at"])


async def record_custody_change(
    connection: Connection, custody_event_id: str, change: CustodyStatusChanged, *, newest: bool
) -> list[CaseKey]:
    """Keep the change as the subject's state when it is the ``newest``, add its identifiers either way; return
    every identifier now known. Call after :func:`lock_subject` in the same transaction."""
    if newest:
        await connection.execute(
            "UPDATE custody_subjects SET custody_event_id = $3, effective_at = $4, sequence = $5, received_at = $6,"
            "  change = $7, updated_at = now() WHERE agency_id = $1 AND subject_id = $2",
            change.agency_id,
            change.subject_id,
            custody_event_id,
            change.effective_at,
            change.sequence,
            change.received_at,
            change.model_dump(mode="json"),
        )
    keys = [case_key(change.agency_id, identifier) for identifier in change.identifiers]
    await connection.execute(
        "INSERT INTO subject_identifiers (agency_id, identifier_kind, identifier_value, subject_id)"
        " SELECT $1, kind, value, $2 FROM unnest($3::text[], $4::text[]) AS k(kind, value)"
        " ON CONFLICT DO NOTHING",
        change.agency_id,
        change.subject_id,
        [str(key[1]) for key in keys],
        [key[2] for key in keys],
    )
    rows = await connection.fetch(
        "SELECT identifier_kind, identifier_value FROM subject_identifiers"
        " WHERE agency_id = $1 AND subject_id = $2 ORDER BY identifier_kind, identifier_value",
        change.agency_id,
        change.subject_id,
    )
    return [(change.agency_id, IdentifierKind(row["identifier_kind"]), row["identifier_value"]) for row in rows]


async def record_stale_change(
    connection: Connection, custody_event_id: str, change: CustodyStatusChanged, newest_event_id: str
) -> None:
    await connection.execute(
        "INSERT INTO stale_custody_changes (custody_event_id, agency_id, subject_id, effective_at, newest_event_id)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        custody_event_id,
        change.agency_id,
        change.subject_id,
        change.effective_at,
        newest_event_id,
    )


async def known_states_for(connection: Connection, key: CaseKey) -> list[KnownCustodyState]:
    """The latest custody state of every (unsealed) subject the agency ever sent under this identifier."""
    rows = await connection.fetch(
        "SELECT c.custody_event_id, c.change FROM subject_identifiers i"
        " JOIN custody_subjects c ON c.agency_id = i.agency_id AND c.subject_id = i.subject_id"
        " WHERE i.agency_id = $1 AND i.identifier_kind = $2 AND i.identifier_value = $3"
        "   AND c.change IS NOT NULL ORDER BY c.custody_event_id",
        key[0],
        str(key[1]),
        key[2],
    )
    return [
        KnownCustodyState(
            custody_event_id=row["custody_event_id"], change=CustodyStatusChanged.model_validate(row["change"])
        )
        for row in rows
    ]


async def urgent_cases_of_agency(
    connection: Connection, agency_id: str, statuses: Sequence[str]
) -> list[tuple[SubscriptionState, KnownCustodyState]]:
    """Each active subscription of the agency with its case's latest known state, when that is one of ``statuses``."""
    rows = await connection.fetch(
        "SELECT DISTINCT ON (s.subscription_id) s.state, c.custody_event_id, c.change FROM subscriptions s"
        " JOIN subject_identifiers i ON i.agency_id = s.agency_id AND i.identifier_kind = s.identifier_kind"
        "   AND i.identifier_value = s.identifier_value"
        " JOIN custody_subjects c ON c.agency_id = i.agency_id AND c.subject_id = i.subject_id"
        " WHERE s.agency_id = $1 AND s.status = 'active' AND c.change IS NOT NULL AND c.change ->> 'status' = ANY($2)"
        " ORDER BY s.subscription_id, c.effective_at DESC",
        agency_id,
        list(statuses),
    )
    return [
        (
            SubscriptionState.model_validate(row["state"]),
            KnownCustodyState(
                custody_event_id=row["custody_event_id"], change=CustodyStatusChanged.model_validate(row["change"])
            ),
        )
        for row in rows
    ]


async def subscriptions_told(connection: Connection, about: str) -> list[SubscriptionState]:
    """The active subscriptions that were sent a notice about ``about`` (see :func:`record_notifications`)."""
    rows = await connection.fetch(
        "SELECT s.state FROM subscriptions s WHERE s.status = 'active' AND s.subscription_id IN"
        " (SELECT subscription_id FROM notification_requests WHERE custody_event_id = $1)"
        " ORDER BY s.subscription_id",
        about,
    )
    return [SubscriptionState.model_validate(row["state"]) for row in rows]


async def seal_subject(connection: Connection, agency_id: str, subject_id: str, at: datetime) -> None:
    """Forget the subject's state and identifiers; remember when it was sealed, to drop older changes arriving late."""
    await connection.execute(
        "INSERT INTO custody_subjects (agency_id, subject_id, sealed_at, updated_at) VALUES ($1, $2, $3, now())"
        " ON CONFLICT (agency_id, subject_id) DO UPDATE SET custody_event_id = NULL, effective_at = NULL,"
        "  sequence = NULL, received_at = NULL, change = NULL, updated_at = now(),"
        "  sealed_at = greatest(custody_subjects.sealed_at, EXCLUDED.sealed_at)",
        agency_id,
        subject_id,
        at,
    )
    await connection.execute(
        "DELETE FROM subject_identifiers WHERE agency_id = $1 AND subject_id = $2", agency_id, subject_id
    )


# Notification requests


async def record_notifications(
    connection: Connection,
    cause_event_id: str,
    notices: Sequence[tuple[NotificationRequested, bytes]],
    about: str | None = None,
) -> list[tuple[NotificationRequested, bytes]]:
    """Store each decided notice with its encoded event; returns those new (one per contact and custody change).

    ``about`` replaces the custody event as what the notices are about (a feed silence), for de-duplication.
    """
    if not notices:
        return []
    inserted = await connection.fetch(
        "INSERT INTO notification_requests (notification_id, cause_event_id, subscription_id, channel,"
        " custody_event_id, kind, urgency, value)"
        " SELECT n, $1, s, c, e, k, u, v FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[],"
        " $7::text[], $8::bytea[]) WITH ORDINALITY AS t(n, s, c, e, k, u, v, o) ORDER BY o"
        " ON CONFLICT DO NOTHING RETURNING notification_id",
        cause_event_id,
        [notice.notification_id for notice, _ in notices],
        [notice.subscription_id for notice, _ in notices],
        [str(notice.channel) for notice, _ in notices],
        [about or (notice.custody.custody_event_id if notice.custody else "") for notice, _ in notices],
        [str(notice.kind) for notice, _ in notices],
        [str(notice.urgency) for notice, _ in notices],
        [value for _, value in notices],
    )
    new = {row["notification_id"] for row in inserted}
    return [(notice, value) for notice, value in notices if notice.notification_id in new]


async def notifications_caused_by(connection: Connection, cause_event_id: str) -> list[StoredNotification]:
    rows = await connection.fetch(
        "SELECT notification_id, value FROM notification_requests WHERE cause_event_id = $1 ORDER BY notification_id",
        cause_event_id,
    )
    return [StoredNotification(row["notification_id"], bytes(row["value"])) for row in rows]


async def prune(connection: Connection, older_than: datetime) -> int:
    """Forget handled events and decided notices older than the retention; returns how many rows went.

    A replay only ever concerns the last uncommitted batch, so old rows serve only to recognise very late
    duplicates, whose notification ids are deterministic anyway.
    """
    handled = await connection.execute("DELETE FROM handled_events WHERE handled_at < $1", older_than)
    requests = await connection.execute(
        "DELETE FROM notification_requests WHERE created_at < $1 AND kind <> 'feed_silence'", older_than
    )
    stale = await connection.execute("DELETE FROM stale_custody_changes WHERE recorded_at < $1", older_than)
    reminders = await connection.execute(
        "DELETE FROM scheduled_notices WHERE state <> 'pending' AND decided_at < $1", older_than
    )
    return sum(int(status.rsplit(" ", 1)[-1]) for status in (handled, requests, stale, reminders))


async def counts(connection: Connection, agency_id: str | None = None) -> dict[str, int]:
    """Sizes of matching's state, for operators (no personal data); of one agency's, when given."""
    row = await connection.fetchrow(
        "SELECT (SELECT count(*) FROM subscriptions WHERE status = 'active'"
        "         AND ($1::text IS NULL OR agency_id = $1)) AS active_subscriptions,"
        " (SELECT count(*) FROM subscriptions, jsonb_array_elements(state -> 'contacts') AS contact"
        "   WHERE status = 'active' AND ($1::text IS NULL OR agency_id = $1)"
        "     AND (contact ->> 'verified')::boolean AND (contact ->> 'active')::boolean) AS reachable_contacts,"
        " (SELECT count(*) FROM custody_subjects WHERE change IS NOT NULL"
        "   AND ($1::text IS NULL OR agency_id = $1)) AS subjects_with_status,"
        " (SELECT count(*) FROM custody_subjects WHERE sealed_at IS NOT NULL"
        "   AND ($1::text IS NULL OR agency_id = $1)) AS sealed_subjects,"
        " (SELECT count(*) FROM notification_requests) AS notification_requests",
        agency_id,
    )
    return {} if row is None else {key: int(value) for key, value in row.items()}


# Agency profiles


async def save_agency_profile(connection: Connection, profile: AgencyProfile) -> None:
    await connection.execute(
        "INSERT INTO agency_profiles (agency_id, profile, updated_at) VALUES ($1, $2, $3)"
        " ON CONFLICT (agency_id) DO UPDATE SET profile = EXCLUDED.profile, updated_at = EXCLUDED.updated_at"
        " WHERE agency_profiles.updated_at <= EXCLUDED.updated_at",
        profile.agency_id,
        profile.model_dump(mode="json"),
        profile.updated_at,
    )


async def agency_profile(connection: Connection, agency_id: str) -> AgencyProfile | None:
    profile: Any = await connection.fetchval("SELECT profile FROM agency_profiles WHERE agency_id = $1", agency_id)
    return None if profile is None else AgencyProfile.model_validate(profile)


# Scheduled notices (reminders)


async def replace_reminders(
    connection: Connection,
    subscription_ids: Sequence[str],
    *,
    subject: tuple[str, str],
    kind: NotificationKind,
    planned: Sequence[Reminder],
    now: datetime,
) -> None:
    """Make ``planned`` the subject's pending reminders of ``kind`` for these subscriptions: others are cancelled
    (a changed date, changed quiet hours), except those of the same date already due (about to be sent); one
    planned again (a redelivered event) is the same row and keeps its state."""
    agency_id, subject_id = subject
    keep = [reminder.reminder_id for reminder in planned]
    await connection.execute(
        "UPDATE scheduled_notices SET state = 'cancelled', decided_at = now()"
        " WHERE state = 'pending' AND agency_id = $1 AND subject_id = $2 AND kind = $3"
        "   AND subscription_id = ANY($4::text[]) AND NOT (reminder_id = ANY($5::text[]))"
        "   AND (scheduled_for IS DISTINCT FROM $6 OR due_at > $7)",
        agency_id,
        subject_id,
        str(kind),
        list(subscription_ids),
        keep,
        planned[0].scheduled_for if planned else None,
        now,
    )
    if not planned:
        return
    await connection.execute(
        "INSERT INTO scheduled_notices (reminder_id, subscription_id, agency_id, subject_id, kind, scheduled_for,"
        " due_at) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],"
        " $6::timestamptz[], $7::timestamptz[]) ON CONFLICT (reminder_id) DO NOTHING",
        keep,
        [reminder.subscription_id for reminder in planned],
        [reminder.agency_id for reminder in planned],
        [reminder.subject_id for reminder in planned],
        [str(reminder.kind) for reminder in planned],
        [reminder.scheduled_for for reminder in planned],
        [reminder.due_at for reminder in planned],
    )


async def cancel_reminders(
    connection: Connection, agency_id: str, subject_id: str, kinds: Sequence[NotificationKind]
) -> int:
    """A release that happened (or a seal) ends the pending reminders of those kinds for the subject."""
    status = await connection.execute(
        "UPDATE scheduled_notices SET state = 'cancelled', decided_at = now()"
        " WHERE state = 'pending' AND agency_id = $1 AND subject_id = $2 AND kind = ANY($3::text[])",
        agency_id,
        subject_id,
        [str(kind) for kind in kinds],
    )
    return int(status.rsplit(" ", 1)[-1])


async def due_reminders(connection: Connection, now: datetime, limit: int) -> list[Reminder]:
    """Pending reminders due by ``now``, locked (skipped by another replica) until the transaction ends."""
    rows = await connection.fetch(
        "SELECT reminder_id, subscription_id, agency_id, subject_id, kind, scheduled_for, due_at"
        " FROM scheduled_notices WHERE state = 'pending' AND due_at <= $1"
        " ORDER BY due_at, reminder_id LIMIT $2 FOR UPDATE SKIP LOCKED",
        now,
        limit,
    )
    return [
        Reminder(
            reminder_id=row["reminder_id"],
            subscription_id=row["subscription_id"],
            agency_id=row["agency_id"],
            subject_id=row["subject_id"],
            kind=NotificationKind(row["kind"]),
            scheduled_for=row["scheduled_for"],
            due_at=row["due_at"],
        )
        for row in rows
    ]


async def mark_reminders(connection: Connection, reminder_ids: Sequence[str], state: str) -> None:
    await connection.execute(
        "UPDATE scheduled_notices SET state = $2, decided_at = now() WHERE reminder_id = ANY($1::text[])",
        list(reminder_ids),
        state,
    )


async def known_state_of_subject(connection: Connection, agency_id: str, subject_id: str) -> KnownCustodyState | None:
    row = await connection.fetchrow(
        "SELECT custody_event_id, change FROM custody_subjects"
        " WHERE agency_id = $1 AND subject_id = $2 AND change IS NOT NULL",
        agency_id,
        subject_id,
    )
    if row is None:
        return None
    return KnownCustodyState(
        custody_event_id=row["custody_event_id"], change=CustodyStatusChanged.model_validate(row["change"])
    )


async def load_subscriptions(connection: Connection, subscription_ids: Sequence[str]) -> dict[str, SubscriptionState]:
    rows = await connection.fetch(
        "SELECT subscription_id, state FROM subscriptions WHERE subscription_id = ANY($1::text[])",
        list(subscription_ids),
    )
    return {row["subscription_id"]: SubscriptionState.model_validate(row["state"]) for row in rows}


# People transferred to another participating agency


@dataclass(frozen=True)
class TransferredSubject:
    agency_id: str
    subject_id: str
    keys: list[CaseKey]


async def transferred_to(
    connection: Connection, agency_id: str, person_numbers: Sequence[str], since: datetime
) -> list[TransferredSubject]:
    """Subjects of other agencies whose newest change is a transfer to ``agency_id`` since ``since``, known by one
    of these (normalised) person numbers; each with every identifier its agency sent."""
    if not person_numbers:
        return []
    rows = await connection.fetch(
        "SELECT DISTINCT c.agency_id, c.subject_id FROM subject_identifiers i"
        " JOIN custody_subjects c ON c.agency_id = i.agency_id AND c.subject_id = i.subject_id"
        " WHERE i.identifier_kind = 'person_number' AND i.identifier_value = ANY($2::text[])"
        "   AND c.agency_id <> $1 AND c.change ->> 'status' = 'transferred'"
        "   AND c.change ->> 'transferred_to_agency_id' = $1 AND c.effective_at >= $3"
        " ORDER BY c.agency_id, c.subject_id",
        agency_id,
        list(person_numbers),
        since,
    )
    found = []
    for row in rows:
        identifiers = await connection.fetch(
            "SELECT identifier_kind, identifier_value FROM subject_identifiers"
            " WHERE agency_id = $1 AND subject_id = $2",
            row["agency_id"],
            row["subject_id"],
        )
        keys = [(row["agency_id"], IdentifierKind(i["identifier_kind"]), i["identifier_value"]) for i in identifiers]
        found.append(TransferredSubject(row["agency_id"], row["subject_id"], keys))
    return found


async def follow(
    connection: Connection,
    subscription_ids: Sequence[str],
    agency_id: str,
    subject_id: str,
    came_from: TransferredSubject,
) -> set[str]:
    """These subscriptions follow the subject from now on; returns those that did not already."""
    rows = await connection.fetch(
        "INSERT INTO followed_subjects (subscription_id, agency_id, subject_id, from_agency_id, from_subject_id)"
        " SELECT s, $2, $3, $4, $5 FROM unnest($1::text[]) AS s ON CONFLICT DO NOTHING RETURNING subscription_id",
        list(subscription_ids),
        agency_id,
        subject_id,
        came_from.agency_id,
        came_from.subject_id,
    )
    return {row["subscription_id"] for row in rows}


async def followers_of(connection: Connection, agency_id: str, subject_id: str) -> list[SubscriptionState]:
    """The active subscriptions that followed a transferred person to this agency's subject."""
    rows = await connection.fetch(
        "SELECT s.state FROM followed_subjects f JOIN subscriptions s USING (subscription_id)"
        " WHERE f.agency_id = $1 AND f.subject_id = $2 AND s.status = 'active' ORDER BY s.subscription_id",
        agency_id,
        subject_id,
    )
    return [SubscriptionState.model_validate(row["state"]) for row in rows]
