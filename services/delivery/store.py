"""All SQL of the delivery service: plain async functions taking a connection."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.delivery.domain import PAUSABLE_KINDS, ContactGate, SubscriptionGate
from shared.db import Connection
from shared.events import AgencyProfile, DeliveryStatus, NotificationRequested, SubscriptionState
from shared.vocabulary import Channel, normalise_identifier


@dataclass(frozen=True)
class NotificationRow:
    notification_id: str
    event_id: str
    trace_id: str
    request: NotificationRequested
    contact_index: str
    status: DeliveryStatus
    outcome: str | None
    next_attempt_at: datetime | None
    in_flight_attempt_id: str | None
    lease_until: datetime | None
    attempt_count: int
    failure_count: int
    first_attempt_at: datetime | None
    repeat_until: datetime | None
    acknowledged_at: datetime | None
    parked_reason: str | None
    stop_reason: str | None
    replayed_from: str | None
    next_purpose: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class AttemptRow:
    attempt_id: str
    notification_id: str
    number: int
    purpose: str
    channel: str
    contact_masked: str
    provider: str | None
    provider_message_id: str | None
    status: DeliveryStatus
    error_code: str | None
    detail: str | None
    created_at: datetime
    handed_off_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime
    calling_at: datetime | None
    body_fingerprint: str | None
    email_message_id: str | None


_NOTIFICATION_COLUMNS = (
    "notification_id, event_id, trace_id, request, contact_index, status, outcome, next_attempt_at,"
    " in_flight_attempt_id, lease_until, attempt_count, failure_count, first_attempt_at, repeat_until,"
    " acknowledged_at, parked_reason, stop_reason, replayed_from, next_purpose, created_at, updated_at"
)
_ATTEMPT_COLUMNS = (
    "attempt_id, notification_id, number, purpose, channel, contact_masked, provider, provider_message_id, status,"
    " error_code, detail, created_at, handed_off_at, completed_at, updated_at, calling_at, body_fingerprint,"
    " email_message_id"
)


def _notification(row: asyncpg.Record) -> NotificationRow:
    values = dict(row)
    values["request"] = NotificationRequested.model_validate(values["request"])
    values["status"] = DeliveryStatus(values["status"])
    return NotificationRow(**values)


def _attempt(row: asyncpg.Record) -> AttemptRow:
    values = dict(row)
    values["status"] = DeliveryStatus(values["status"])
    return AttemptRow(**values)


# --- agencies -------------------------------------------------------------------------------------------------


async def upsert_agency(connection: Connection, profile: AgencyProfile) -> bool:
    """Keep the newest profile of each agency; an older one arriving late changes nothing."""
    updated = await connection.fetchval(
        "INSERT INTO agencies (agency_id, profile, notices_paused, updated_at) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (agency_id) DO UPDATE SET profile = EXCLUDED.profile,"
        " notices_paused = EXCLUDED.notices_paused, updated_at = EXCLUDED.updated_at"
        " WHERE agencies.updated_at <= EXCLUDED.updated_at RETURNING true",
        profile.agency_id,
        profile.model_dump(mode="json"),
        profile.notices_paused,
        profile.updated_at,
    )
    return bool(updated)


async def get_agency(connection: Connection, agency_id: str) -> AgencyProfile | None:
    document: Any = await connection.fetchval("SELECT profile FROM agencies WHERE agency_id = $1", agency_id)
    return None if document is None else AgencyProfile.model_validate(document)


# --- subscription states --------------------------------------------------------------------------------------


async def upsert_subscription_state(connection: Connection, state: SubscriptionState) -> bool:
    """Keep the newest version of each subscription's state; False for an older or repeated version."""
    contacts = {
        contact.channel.value: {
            "active": contact.active,
            "verified": contact.verified,
            "masked": contact.masked,
            "pin_hash": contact.pin_hash,
        }
        for contact in state.contacts
    }
    updated = await connection.fetchval(
        "INSERT INTO subscription_states (subscription_id, status, version, contacts, updated_at)"
        " VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (subscription_id) DO UPDATE SET status = EXCLUDED.status, version = EXCLUDED.version,"
        " contacts = EXCLUDED.contacts, updated_at = EXCLUDED.updated_at"
        " WHERE subscription_states.version < EXCLUDED.version RETURNING true",
        state.subscription_id,
        state.status,
        state.version,
        contacts,
        state.updated_at,
    )
    return bool(updated)


def _gate(row: asyncpg.Record) -> SubscriptionGate:
    contacts: dict[str, dict[str, Any]] = row["contacts"]
    return SubscriptionGate(
        status=row["status"],
        version=row["version"],
        contacts={
            Channel(channel): ContactGate(
                active=bool(contact["active"]), verified=bool(contact["verified"]), masked=str(contact["masked"])
            )
            for channel, contact in contacts.items()
        },
    )


async def get_subscription_gate(connection: Connection, subscription_id: str) -> SubscriptionGate | None:
    row = await connection.fetchrow(
        "SELECT status, version, contacts FROM subscription_states WHERE subscription_id = $1", subscription_id
    )
    return None if row is None else _gate(row)


async def voice_pin_hash(connection: Connection, subscription_id: str) -> str | None:
    """The hash of the PIN the subscriber chose for voice calls, from their latest state; None without one."""
    value = await connection.fetchval(
        "SELECT contacts -> 'voice' ->> 'pin_hash' FROM subscription_states WHERE subscription_id = $1",
        subscription_id,
    )
    return None if value is None else str(value)


async def known_provider_messages(connection: Connection, provider_message_ids: list[str]) -> set[str]:
    """Which of these provider ids (call SIDs) some attempt already recorded."""
    rows = await connection.fetch(
        "SELECT provider_message_id FROM attempts WHERE provider_message_id = ANY($1::text[])", provider_message_ids
    )
    return {row["provider_message_id"] for row in rows}


async def get_subscription_gates(connection: Connection, subscription_ids: list[str]) -> dict[str, SubscriptionGate]:
    """The known states of several subscriptions in one query (subscriptions with none are absent)."""
    rows = await connection.fetch(
        "SELECT subscription_id, status, version, contacts FROM subscription_states"
        " WHERE subscription_id = ANY($1::text[])",
        subscription_ids,
    )
    return {row["subscription_id"]: _gate(row) for row in rows}


# --- notifications --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewNotification:
    """A requested notification ready to store, with what the consumer worked out for it."""

    request: NotificationRequested
    event_id: str
    trace_id: str
    contact_index: str
    next_attempt_at: datetime
    repeat_until: datetime | None


async def insert_notifications(connection: Connection, notifications: Sequence[NewNotification]) -> set[str]:
    """Insert many requested notifications in one statement; returns the ids that were new.

    Ids already stored (redeliveries) and ids repeated within the batch are skipped, as one by one.
    """
    columns: list[list[Any]] = [[] for _ in range(18)]
    for new in notifications:
        request, custody = new.request, new.request.custody
        values = (
            request.notification_id,
            new.event_id,
            new.trace_id,
            request.kind.value,
            request.subscription_id,
            request.agency_id,
            request.channel.value,
            request.urgency.value,
            request.language.value,
            request.contact_masked,
            new.contact_index,
            custody.identifier.kind.value if custody else None,
            normalise_identifier(custody.identifier.value) if custody else None,
            custody.custody_event_id if custody else None,
            custody.feed_received_at if custody else None,
            request.model_dump_json(),
            new.next_attempt_at,
            new.repeat_until,
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    rows = await connection.fetch(
        "INSERT INTO notifications (notification_id, event_id, trace_id, kind, subscription_id, agency_id, channel,"
        " urgency, language, contact_masked, contact_index, case_kind, case_value, custody_event_id,"
        " feed_received_at, request, next_attempt_at, repeat_until)"
        " SELECT n.notification_id, n.event_id, n.trace_id, n.kind, n.subscription_id, n.agency_id, n.channel,"
        " n.urgency, n.language, n.contact_masked, n.contact_index, n.case_kind, n.case_value, n.custody_event_id,"
        " n.feed_received_at, n.request::jsonb, n.next_attempt_at, n.repeat_until"
        " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],"
        " $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[],"
        " $15::timestamptz[], $16::text[], $17::timestamptz[], $18::timestamptz[])"
        " WITH ORDINALITY AS n (notification_id, event_id, trace_id, kind, subscription_id, agency_id, channel,"
        " urgency, language, contact_masked, contact_index, case_kind, case_value, custody_event_id,"
        " feed_received_at, request, next_attempt_at, repeat_until, position)"
        " ORDER BY n.position"
        " ON CONFLICT (notification_id) DO NOTHING RETURNING notification_id",
        *columns,
    )
    return {row["notification_id"] for row in rows}


async def get_notification(
    connection: Connection, notification_id: str, *, for_update: bool = False
) -> NotificationRow | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await connection.fetchrow(
        f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications WHERE notification_id = $1{lock}",  # noqa: S608
        notification_id,
    )
    return None if row is None else _notification(row)


LOCK_DUE_QUERY = (
    f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications n"  # noqa: S608
    " WHERE n.due_at <= $1"
    "   AND (n.kind <> ALL($3::text[]) OR NOT EXISTS ("
    "        SELECT 1 FROM agencies a WHERE a.agency_id = n.agency_id AND a.notices_paused))"
    " ORDER BY n.due_at LIMIT $2 FOR UPDATE OF n SKIP LOCKED"
)
"""$1 now, $2 how many, $3 the kinds an agency's pause holds back."""


async def lock_due(connection: Connection, now: datetime, limit: int) -> list[NotificationRow]:
    """Lock notifications whose next attempt is due, or whose in-flight attempt outlived its lease (a crash).

    Both are ``due_at`` (a generated column), so this is a range scan of its index, oldest first. ``SKIP LOCKED``:
    several dispatchers (replicas) share the work without waiting on each other. Custody notices of an agency that
    paused its notices are held back.
    """
    rows = await connection.fetch(LOCK_DUE_QUERY, now, limit, sorted(kind.value for kind in PAUSABLE_KINDS))
    return [_notification(row) for row in rows]


async def update_notification(connection: Connection, notification_id: str, **changes: Any) -> None:
    """Set the given columns (names are ours, never user input) and touch ``updated_at``."""
    names = list(changes)
    assignments = ", ".join(f"{name} = ${index}" for index, name in enumerate(names, start=2))
    await connection.execute(
        f"UPDATE notifications SET {assignments}, updated_at = now() WHERE notification_id = $1",  # noqa: S608
        notification_id,
        *(changes[name] for name in names),
    )


async def reopen_for_replay(connection: Connection, notification_id: str, *, replayed_from: str, now: datetime) -> bool:
    """An operator replayed this parked notice: make it due again for one new attempt; False if it may not be.

    Only a notice delivery gave up on (``failed``) and not already reopened by this same dead letter: a delivered,
    acknowledged or stopped one (by its subscriber or an operator) stays as it is, and a redelivered replay is a
    no-op. The retry budget starts afresh.
    """
    reopened = await connection.fetchval(
        "UPDATE notifications SET outcome = NULL, status = 'created', next_attempt_at = $3, failure_count = 0,"
        " first_attempt_at = $3, parked_reason = NULL, dead_lettered_at = NULL, replayed_from = $2,"
        " next_purpose = 'replay', updated_at = now()"
        " WHERE notification_id = $1 AND outcome = 'failed' AND in_flight_attempt_id IS NULL"
        " AND replayed_from IS DISTINCT FROM $2 RETURNING true",
        notification_id,
        replayed_from,
        now,
    )
    return bool(reopened)


async def seal_subject(
    connection: Connection, agency_id: str, identifiers: Sequence[tuple[str, str]], sealed_at: datetime
) -> list[str]:
    """Remember a sealed subject by each (kind, normalised value); returns its notices still open, locked."""
    kinds, values = [kind for kind, _ in identifiers], [value for _, value in identifiers]
    await connection.execute(
        "INSERT INTO sealed_subjects (agency_id, case_kind, case_value, sealed_at)"
        " SELECT $1, kind, value, $4 FROM unnest($2::text[], $3::text[]) AS i (kind, value) ON CONFLICT DO NOTHING",
        agency_id,
        kinds,
        values,
        sealed_at,
    )
    rows = await connection.fetch(
        "SELECT notification_id FROM notifications n JOIN unnest($2::text[], $3::text[]) AS i (kind, value)"
        " ON n.case_kind = i.kind AND n.case_value = i.value"
        " WHERE n.agency_id = $1 AND n.outcome IS NULL ORDER BY notification_id FOR UPDATE OF n",
        agency_id,
        kinds,
        values,
    )
    return [row["notification_id"] for row in rows]


async def sealed_among(connection: Connection, notification_ids: Sequence[str]) -> list[str]:
    """Which of these open notices are about a sealed subject (locked for the caller's change)."""
    rows = await connection.fetch(
        "SELECT n.notification_id FROM notifications n JOIN sealed_subjects s"
        " ON s.agency_id = n.agency_id AND s.case_kind = n.case_kind AND s.case_value = n.case_value"
        " WHERE n.notification_id = ANY($1::text[]) AND n.outcome IS NULL ORDER BY n.notification_id FOR UPDATE OF n",
        list(notification_ids),
    )
    return [row["notification_id"] for row in rows]


async def open_notifications_of(
    connection: Connection, subscription_id: str, *, channel: str | None = None, urgent_only: bool = False
) -> list[str]:
    """Ids of a subscription's notifications still waiting for an attempt (locked for the caller's change)."""
    rows = await connection.fetch(
        "SELECT notification_id FROM notifications WHERE subscription_id = $1 AND outcome IS NULL"
        " AND ($2::text IS NULL OR channel = $2) AND (NOT $3 OR urgency = 'urgent')"
        " ORDER BY notification_id FOR UPDATE",
        subscription_id,
        channel,
        urgent_only,
    )
    return [row["notification_id"] for row in rows]


async def notifications_to_dead_letter(connection: Connection, limit: int) -> list[NotificationRow]:
    rows = await connection.fetch(
        f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications"  # noqa: S608
        " WHERE outcome = 'failed' AND dead_lettered_at IS NULL ORDER BY created_at LIMIT $1"
        " FOR UPDATE SKIP LOCKED",
        limit,
    )
    return [_notification(row) for row in rows]


async def search_notifications(
    connection: Connection,
    *,
    subscription_id: str | None,
    agency_id: str | None,
    case: str | None,
    since: datetime | None,
    until: datetime | None,
    status: str | None,
    limit: int,
) -> list[NotificationRow]:
    rows = await connection.fetch(
        f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications"  # noqa: S608
        " WHERE ($1::text IS NULL OR subscription_id = $1) AND ($2::text IS NULL OR agency_id = $2)"
        " AND ($3::text IS NULL OR case_value = $3) AND ($4::timestamptz IS NULL OR created_at >= $4)"
        " AND ($5::timestamptz IS NULL OR created_at < $5) AND ($6::text IS NULL OR status = $6)"
        " ORDER BY created_at DESC, notification_id LIMIT $7",
        subscription_id,
        agency_id,
        case,
        since,
        until,
        status,
        limit,
    )
    return [_notification(row) for row in rows]


# --- attempts -------------------------------------------------------------------------------------------------


async def insert_attempt(
    connection: Connection,
    *,
    attempt_id: str,
    notification_id: str,
    number: int,
    purpose: str,
    channel: str,
    contact_masked: str,
    now: datetime,
) -> None:
    await connection.execute(
        "INSERT INTO attempts (attempt_id, notification_id, number, purpose, channel, contact_masked, status,"
        " created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 'sending', $7, $7)",
        attempt_id,
        notification_id,
        number,
        purpose,
        channel,
        contact_masked,
        now,
    )


async def record_calling(
    connection: Connection,
    attempt_id: str,
    now: datetime,
    *,
    body_fingerprint: str | None = None,
    email_message_id: str | None = None,
) -> None:
    """The provider call is about to begin: what a take-over needs to find the message, committed first."""
    await connection.execute(
        "UPDATE attempts SET calling_at = $2, body_fingerprint = $3, email_message_id = $4, updated_at = $2"
        " WHERE attempt_id = $1",
        attempt_id,
        now,
        body_fingerprint,
        email_message_id,
    )


async def get_attempt(connection: Connection, attempt_id: str, *, for_update: bool = False) -> AttemptRow | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await connection.fetchrow(
        f"SELECT {_ATTEMPT_COLUMNS} FROM attempts WHERE attempt_id = $1{lock}",  # noqa: S608
        attempt_id,
    )
    return None if row is None else _attempt(row)


async def find_attempt_by_provider_message(connection: Connection, provider_message_id: str) -> str | None:
    value: Any = await connection.fetchval(
        "SELECT attempt_id FROM attempts WHERE provider_message_id = $1 LIMIT 1", provider_message_id
    )
    return None if value is None else str(value)


async def update_attempt(connection: Connection, attempt_id: str, now: datetime, **changes: Any) -> None:
    names = list(changes)
    assignments = "".join(f", {name} = ${index}" for index, name in enumerate(names, start=3))
    await connection.execute(
        f"UPDATE attempts SET updated_at = $2{assignments} WHERE attempt_id = $1",  # noqa: S608
        attempt_id,
        now,
        *(changes[name] for name in names),
    )


async def attempts_of(connection: Connection, notification_ids: list[str]) -> dict[str, list[AttemptRow]]:
    rows = await connection.fetch(
        f"SELECT {_ATTEMPT_COLUMNS} FROM attempts WHERE notification_id = ANY($1::text[])"  # noqa: S608
        " ORDER BY notification_id, number",
        notification_ids,
    )
    found: dict[str, list[AttemptRow]] = {notification_id: [] for notification_id in notification_ids}
    for row in rows:
        found[row["notification_id"]].append(_attempt(row))
    return found


async def attempts_awaiting_receipt(
    connection: Connection,
    *,
    handed_off_before: datetime,
    handed_off_after: datetime,
    checked_before: datetime,
    limit: int,
) -> list[AttemptRow]:
    """SMS and call attempts handed off a while ago whose final receipt never came (a missed status callback)."""
    rows = await connection.fetch(
        f"SELECT {_ATTEMPT_COLUMNS} FROM attempts"  # noqa: S608
        " WHERE status IN ('sending', 'sent') AND channel IN ('sms', 'voice') AND provider_message_id IS NOT NULL"
        " AND handed_off_at < $1 AND handed_off_at > $2"
        " AND (last_checked_at IS NULL OR last_checked_at < $3) ORDER BY handed_off_at LIMIT $4",
        handed_off_before,
        handed_off_after,
        checked_before,
        limit,
    )
    return [_attempt(row) for row in rows]


# --- disabled contact points ----------------------------------------------------------------------------------


async def disable_contact(
    connection: Connection, *, subscription_id: str, channel: str, contact_index: str, reason: str, now: datetime
) -> bool:
    inserted = await connection.fetchval(
        "INSERT INTO disabled_contacts (subscription_id, channel, contact_index, reason, disabled_at)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING true",
        subscription_id,
        channel,
        contact_index,
        reason,
        now,
    )
    return bool(inserted)


async def count_retrying(connection: Connection) -> int:
    """Notices waiting to retry a temporary failure (read from a small partial index)."""
    count: Any = await connection.fetchval(
        "SELECT count(*) FROM notifications WHERE outcome IS NULL AND failure_count > 0"
    )
    return int(count or 0)


async def disabled_among(connection: Connection, contacts: list[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
    """Which of these (subscription id, channel, contact index) a provider told us never to use again."""
    rows = await connection.fetch(
        "SELECT d.subscription_id, d.channel, d.contact_index FROM disabled_contacts d"
        " JOIN unnest($1::text[], $2::text[], $3::text[]) AS c (subscription_id, channel, contact_index)"
        " USING (subscription_id, channel, contact_index)",
        [contact[0] for contact in contacts],
        [contact[1] for contact in contacts],
        [contact[2] for contact in contacts],
    )
    return {(row["subscription_id"], row["channel"], row["contact_index"]) for row in rows}


# --- the shared send rate -------------------------------------------------------------------------------------


async def take_send_slots(connection: Connection, bucket: str, wanted: int, *, rate: float, burst: float) -> int:
    """Up to ``wanted`` slots of the bucket every replica draws from (see migration 0004); how many were granted."""
    granted: Any = await connection.fetchval("SELECT take_send_slots($1, $2, $3, $4)", bucket, wanted, rate, burst)
    return int(granted or 0)
