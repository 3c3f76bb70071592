"""All SQL of the subscription service: plain async functions taking a connection."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg

from services.subscription.domain.case import CaseFile, HistoryEntry
from services.subscription.domain.names import HELD_NOW, name_words
from services.subscription.domain.subscription import Contact, Subscription
from services.subscription.domain.verification import Challenge
from shared.db import Connection
from shared.events import AgencyProfile, AgencyResources, CaseInformation, CustodyStatusChanged, SubjectIdentifier
from shared.vocabulary import Channel, CustodyStatus, IdentifierKind, Language, normalise_identifier

# --- agencies ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Agency:
    agency_id: str
    name: str
    timezone: str
    active: bool
    public_name_search: bool = False


_AGENCY_COLUMNS = "agency_id, name, timezone, active, public_name_search"


async def upsert_agency(connection: Connection, profile: AgencyProfile) -> None:
    """Keep the newest profile; an older one arriving late changes nothing."""
    await connection.execute(
        """
        INSERT INTO agencies (agency_id, name, timezone, active, public_name_search, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (agency_id) DO UPDATE
            SET name = EXCLUDED.name, timezone = EXCLUDED.timezone, active = EXCLUDED.active,
                public_name_search = EXCLUDED.public_name_search, updated_at = EXCLUDED.updated_at
            WHERE agencies.updated_at <= EXCLUDED.updated_at
        """,
        profile.agency_id,
        profile.name,
        profile.timezone,
        profile.active,
        profile.public_name_search,
        profile.updated_at,
    )


async def get_agency(connection: Connection, agency_id: str) -> Agency | None:
    row = await connection.fetchrow(f"SELECT {_AGENCY_COLUMNS} FROM agencies WHERE agency_id = $1", agency_id)  # noqa: S608
    return None if row is None else Agency(**dict(row))


async def active_agencies(connection: Connection) -> list[Agency]:
    rows = await connection.fetch(
        f"SELECT {_AGENCY_COLUMNS} FROM agencies WHERE active ORDER BY name, agency_id"  # noqa: S608
    )
    return [Agency(**dict(row)) for row in rows]


# --- subscriptions ----------------------------------------------------------------------------------------------


async def insert_subscription(connection: Connection, subscription: Subscription) -> None:
    await connection.execute(
        """
        INSERT INTO subscriptions (subscription_id, agency_id, identifier_kind, identifier_value, status, language,
            timezone, event_types, quiet_hours_start, quiet_hours_end, manage_nonce, version, created_at, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
        """,
        subscription.subscription_id,
        subscription.agency_id,
        subscription.identifier.kind.value,
        subscription.identifier.value,
        subscription.status,
        subscription.language.value,
        subscription.timezone,
        [status.value for status in subscription.event_types],
        subscription.quiet_hours_start,
        subscription.quiet_hours_end,
        subscription.manage_nonce,
        subscription.version,
        subscription.created_at,
        subscription.updated_at,
    )
    await _save_contacts(connection, subscription)


async def update_subscription(connection: Connection, subscription: Subscription) -> None:
    """Write a changed subscription; the version check refuses a write based on a stale read."""
    result = await connection.execute(
        """
        UPDATE subscriptions SET status = $2, language = $3, timezone = $4, event_types = $5,
            quiet_hours_start = $6, quiet_hours_end = $7, manage_nonce = $8, version = $9, updated_at = $10
        WHERE subscription_id = $1 AND version = $9 - 1
        """,
        subscription.subscription_id,
        subscription.status,
        subscription.language.value,
        subscription.timezone,
        [status.value for status in subscription.event_types],
        subscription.quiet_hours_start,
        subscription.quiet_hours_end,
        subscription.manage_nonce,
        subscription.version,
        subscription.updated_at,
    )
    if result != "UPDATE 1":
        raise RuntimeError(f"subscription {subscription.subscription_id} changed concurrently")
    await _save_contacts(connection, subscription)


async def _save_contacts(connection: Connection, subscription: Subscription) -> None:
    """Upsert the subscription's contact points and delete the ones it no longer has."""
    await connection.execute(
        "DELETE FROM contact_points WHERE subscription_id = $1 AND NOT (channel = ANY($2::text[]))",
        subscription.subscription_id,
        [contact.channel.value for contact in subscription.contacts],
    )
    await connection.executemany(
        """
        INSERT INTO contact_points (subscription_id, channel, ciphertext, masked, blind_index, verified, active,
            disabled_reason, pin_hash)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        ON CONFLICT (subscription_id, channel) DO UPDATE
            SET ciphertext = EXCLUDED.ciphertext, masked = EXCLUDED.masked, blind_index = EXCLUDED.blind_index,
                verified = EXCLUDED.verified, active = EXCLUDED.active, disabled_reason = EXCLUDED.disabled_reason,
                pin_hash = EXCLUDED.pin_hash
        """,
        [
            (
                subscription.subscription_id,
                contact.channel.value,
                contact.ciphertext,
                contact.masked,
                contact.blind_index,
                contact.verified,
                contact.active,
                contact.disabled_reason,
                contact.pin_hash,
            )
            for contact in subscription.contacts
        ],
    )


_SELECT = "SELECT * FROM subscriptions WHERE subscription_id = $1"
_SELECT_FOR_UPDATE = _SELECT + " FOR UPDATE"


async def load_subscription(
    connection: Connection, subscription_id: str, *, for_update: bool = False
) -> Subscription | None:
    row = await connection.fetchrow(_SELECT_FOR_UPDATE if for_update else _SELECT, subscription_id)
    if row is None:
        return None
    contact_rows = await connection.fetch(
        "SELECT * FROM contact_points WHERE subscription_id = $1 ORDER BY channel DESC", subscription_id
    )
    return _subscription(row, contact_rows)


def _subscription(row: asyncpg.Record, contact_rows: Sequence[asyncpg.Record]) -> Subscription:
    return Subscription(
        subscription_id=row["subscription_id"],
        agency_id=row["agency_id"],
        identifier=SubjectIdentifier(kind=IdentifierKind(row["identifier_kind"]), value=row["identifier_value"]),
        status=row["status"],
        contacts=tuple(
            Contact(
                channel=Channel(c["channel"]),
                ciphertext=c["ciphertext"],
                masked=c["masked"],
                blind_index=c["blind_index"],
                verified=c["verified"],
                active=c["active"],
                disabled_reason=c["disabled_reason"],
                pin_hash=c["pin_hash"],
            )
            for c in contact_rows
        ),
        language=Language(row["language"]),
        timezone=row["timezone"],
        event_types=tuple(CustodyStatus(value) for value in row["event_types"]),
        quiet_hours_start=row["quiet_hours_start"],
        quiet_hours_end=row["quiet_hours_end"],
        manage_nonce=row["manage_nonce"],
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def subscription_ids_by_contact(connection: Connection, channel: Channel, blind_index: str) -> list[str]:
    """Every subscription with this contact point, found by its keyed hash, in a stable order (lock order)."""
    rows = await connection.fetch(
        "SELECT subscription_id FROM contact_points WHERE blind_index = $1 AND channel = $2 ORDER BY subscription_id",
        blind_index,
        channel.value,
    )
    return [row["subscription_id"] for row in rows]


async def subscription_ids_after(connection: Connection, after: str, limit: int) -> list[str]:
    rows = await connection.fetch(
        "SELECT subscription_id FROM subscriptions WHERE subscription_id > $1 ORDER BY subscription_id LIMIT $2",
        after,
        limit,
    )
    return [row["subscription_id"] for row in rows]


# --- verification codes -----------------------------------------------------------------------------------------


async def next_code_issue(connection: Connection, subscription_id: str, channel: Channel) -> int:
    value = await connection.fetchval(
        "SELECT coalesce(max(issue), 0) + 1 FROM verification_codes WHERE subscription_id = $1 AND channel = $2",
        subscription_id,
        channel.value,
    )
    return int(value)


async def insert_code(
    connection: Connection,
    *,
    subscription_id: str,
    channel: Channel,
    issue: int,
    code_hash: str,
    created_at: datetime,
    expires_at: datetime,
) -> None:
    await connection.execute(
        """
        INSERT INTO verification_codes (subscription_id, channel, issue, code_hash, created_at, expires_at)
        VALUES ($1, $2, $3, $4, $5, $6)
        """,
        subscription_id,
        channel.value,
        issue,
        code_hash,
        created_at,
        expires_at,
    )


async def latest_code(connection: Connection, subscription_id: str, channel: Channel) -> Challenge | None:
    """The newest code of a contact point, locked: concurrent guesses are counted one after another."""
    row = await connection.fetchrow(
        """
        SELECT issue, code_hash, created_at, expires_at, attempts, consumed_at FROM verification_codes
        WHERE subscription_id = $1 AND channel = $2 ORDER BY issue DESC LIMIT 1 FOR UPDATE
        """,
        subscription_id,
        channel.value,
    )
    if row is None:
        return None
    return Challenge(
        issue=row["issue"],
        code_hash=row["code_hash"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        attempts=row["attempts"],
        consumed_at=row["consumed_at"],
    )


async def record_attempt(connection: Connection, subscription_id: str, channel: Channel, issue: int) -> None:
    await connection.execute(
        "UPDATE verification_codes SET attempts = attempts + 1 WHERE subscription_id = $1 AND channel = $2"
        " AND issue = $3",
        subscription_id,
        channel.value,
        issue,
    )


async def consume_code(
    connection: Connection, subscription_id: str, channel: Channel, issue: int, at: datetime
) -> None:
    await connection.execute(
        "UPDATE verification_codes SET consumed_at = $4 WHERE subscription_id = $1 AND channel = $2 AND issue = $3",
        subscription_id,
        channel.value,
        issue,
        at,
    )


async def code_issue_times(
    connection: Connection, subscription_id: str, channel: Channel, since: datetime
) -> list[datetime]:
    rows = await connection.fetch(
        "SELECT created_at FROM verification_codes WHERE subscription_id = $1 AND channel = $2 AND created_at > $3",
        subscription_id,
        channel.value,
        since,
    )
    return [row["created_at"] for row in rows]


# --- rate limits ------------------------------------------------------------------------------------------------


async def count_hit(connection: Connection, bucket: str, window_start: datetime) -> int:
    """Count one request in a fixed window; returns the hits so far, this one included."""
    hits = await connection.fetchval(
        """
        INSERT INTO rate_limit_windows (bucket, window_start, hits) VALUES ($1, $2, 1)
        ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limit_windows.hits + 1
        RETURNING hits
        """,
        bucket,
        window_start,
    )
    return int(hits)


async def forget_old_windows(connection: Connection, before: datetime) -> None:
    await connection.execute("DELETE FROM rate_limit_windows WHERE window_start < $1", before)


# --- custody status (lookup) ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CustodyView:
    status: CustodyStatus
    facility: str | None
    effective_at: datetime


async def link_identifiers(
    connection: Connection, agency_id: str, subject_id: str, identifiers: Sequence[SubjectIdentifier]
) -> None:
    await connection.executemany(
        """
        INSERT INTO custody_identifiers (agency_id, identifier_kind, identifier_value, subject_id)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (agency_id, identifier_kind, identifier_value) DO UPDATE SET subject_id = EXCLUDED.subject_id
        """,
        [(agency_id, i.kind.value, i.value, subject_id) for i in identifiers],
    )


async def record_custody_status(
    connection: Connection,
    *,
    agency_id: str,
    subject_id: str,
    status: CustodyStatus,
    facility: str | None,
    effective_at: datetime,
    now: datetime,
    display_name: str | None = None,
    birth_date: date | None = None,
) -> None:
    """Keep the latest status by effective time; a late, older change does not overwrite a newer one. A change
    without a name (or a date of birth) keeps the one already known."""
    await connection.execute(
        """
        INSERT INTO custody_subjects (agency_id, subject_id, status, facility, effective_at, updated_at,
            display_name, name_words, birth_date)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        ON CONFLICT (agency_id, subject_id) DO UPDATE
            SET status = EXCLUDED.status, facility = EXCLUDED.facility, effective_at = EXCLUDED.effective_at,
                updated_at = EXCLUDED.updated_at,
                display_name = COALESCE(EXCLUDED.display_name, custody_subjects.display_name),
                birth_date = COALESCE(EXCLUDED.birth_date, custody_subjects.birth_date),
                name_words = CASE WHEN EXCLUDED.display_name IS NULL THEN custody_subjects.name_words
                                  ELSE EXCLUDED.name_words END
            WHERE custody_subjects.effective_at IS NULL OR custody_subjects.effective_at <= EXCLUDED.effective_at
        """,
        agency_id,
        subject_id,
        status.value,
        facility,
        effective_at,
        now,
        display_name,
        name_words(display_name),
        birth_date,
    )


@dataclass(frozen=True)
class NameMatch:
    display_name: str
    status: CustodyStatus
    effective_at: datetime
    facility: str | None
    identifier: SubjectIdentifier


async def people_named(
    connection: Connection,
    agency_id: str,
    words: Sequence[str],
    released_since: datetime,
    limit: int,
    *,
    birth_date: date | None = None,
) -> list[NameMatch]:
    """Unsealed people of the agency whose name has all these words (and who were born on ``birth_date``, when
    given), held now or released since then; each with the identifier a victim registers with (booking number
    first)."""
    rows = await connection.fetch(
        """
        SELECT s.display_name, s.status, s.effective_at, s.facility, i.identifier_kind, i.identifier_value
        FROM custody_subjects s
        JOIN LATERAL (
            SELECT identifier_kind, identifier_value FROM custody_identifiers
            WHERE agency_id = s.agency_id AND subject_id = s.subject_id
            ORDER BY array_position(ARRAY['booking_number', 'person_number', 'case_number'], identifier_kind),
                identifier_value
            LIMIT 1
        ) i ON true
        WHERE s.agency_id = $1 AND s.name_words @> $2::text[] AND NOT s.sealed AND s.display_name IS NOT NULL
            AND (s.status = ANY($3::text[]) OR (s.status = 'released' AND s.effective_at >= $4))
            AND ($6::date IS NULL OR s.birth_date = $6)
        ORDER BY s.display_name, s.subject_id
        LIMIT $5
        """,
        agency_id,
        list(words),
        [status.value for status in HELD_NOW],
        released_since,
        limit,
        birth_date,
    )
    return [
        NameMatch(
            display_name=row["display_name"],
            status=CustodyStatus(row["status"]),
            effective_at=row["effective_at"],
            facility=row["facility"],
            identifier=SubjectIdentifier(kind=IdentifierKind(row["identifier_kind"]), value=row["identifier_value"]),
        )
        for row in rows
    ]


async def seal_subject(connection: Connection, agency_id: str, subject_id: str, now: datetime) -> None:
    await connection.execute(
        """
        INSERT INTO custody_subjects (agency_id, subject_id, sealed, updated_at) VALUES ($1, $2, true, $3)
        ON CONFLICT (agency_id, subject_id) DO UPDATE SET sealed = true, updated_at = EXCLUDED.updated_at
        """,
        agency_id,
        subject_id,
        now,
    )


async def custody_status(connection: Connection, agency_id: str, identifier: SubjectIdentifier) -> CustodyView | None:
    """The latest status of the subject behind this identifier; None when unknown or sealed (no difference)."""
    row = await connection.fetchrow(
        """
        SELECT s.status, s.facility, s.effective_at FROM custody_identifiers i
        JOIN custody_subjects s ON s.agency_id = i.agency_id AND s.subject_id = i.subject_id
        WHERE i.agency_id = $1 AND i.identifier_kind = $2 AND i.identifier_value = $3
            AND NOT s.sealed AND s.status IS NOT NULL
        """,
        agency_id,
        identifier.kind.value,
        identifier.value,
    )
    if row is None:
        return None
    return CustodyView(CustodyStatus(row["status"]), row["facility"], row["effective_at"])


# --- inbound SMS ------------------------------------------------------------------------------------------------


async def claim_inbound_sms(connection: Connection, message_sid: str, keyword: str) -> bool:
    claimed = await connection.fetchval(
        "INSERT INTO inbound_sms (message_sid, keyword) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
        message_sid,
        keyword,
    )
    return bool(claimed)


async def forget_inbound_sms(connection: Connection, before: datetime) -> None:
    await connection.execute("DELETE FROM inbound_sms WHERE received_at < $1", before)


# --- case information, custody history and agency resources (verified subscribers only) -------------------------


async def save_agency_resources(connection: Connection, profile: AgencyProfile) -> None:
    """After :func:`upsert_agency`: the resources of the profile it kept (none of an older one arriving late)."""
    await connection.execute(
        "UPDATE agencies SET resources = $2 WHERE agency_id = $1 AND updated_at = $3",
        profile.agency_id,
        profile.resources.model_dump(mode="json"),
        profile.updated_at,
    )


async def agency_resources(connection: Connection, agency_id: str) -> AgencyResources:
    resources: Any = await connection.fetchval("SELECT resources FROM agencies WHERE agency_id = $1", agency_id)
    return AgencyResources.model_validate(resources or {})


async def record_case_information(connection: Connection, custody_event_id: str, change: CustodyStatusChanged) -> None:
    """After :func:`record_custody_status`: a status change joins the subject's history; the case information of
    the subject's newest change is the one kept."""
    if not change.case_information_only:
        await connection.execute(
            "INSERT INTO custody_history (custody_event_id, agency_id, subject_id, status, facility, effective_at)"
            " SELECT $1, $2, $3, $4, $5, $6 WHERE NOT EXISTS (SELECT 1 FROM custody_subjects"
            "   WHERE agency_id = $2 AND subject_id = $3 AND sealed)"  # a change read after the seal is not kept
            " ON CONFLICT DO NOTHING",
            custody_event_id,
            change.agency_id,
            change.subject_id,
            change.status.value,
            change.facility,
            change.effective_at,
        )
    await connection.execute(
        "UPDATE custody_subjects SET case_info = $3 WHERE agency_id = $1 AND subject_id = $2 AND effective_at = $4"
        " AND NOT sealed",
        change.agency_id,
        change.subject_id,
        change.case.model_dump(mode="json") if change.case else None,
        change.effective_at,
    )


async def forget_case(connection: Connection, agency_id: str, subject_id: str) -> None:
    """A sealed subject's case information and history are never shown again."""
    await connection.execute(
        "UPDATE custody_subjects SET case_info = NULL WHERE agency_id = $1 AND subject_id = $2", agency_id, subject_id
    )
    await connection.execute(
        "DELETE FROM custody_history WHERE agency_id = $1 AND subject_id = $2", agency_id, subject_id
    )


async def case_file(connection: Connection, agency_id: str, identifier: SubjectIdentifier) -> CaseFile | None:
    """The case information and custody history (newest first) behind this identifier; None when unknown or
    sealed."""
    subject = await connection.fetchrow(
        "SELECT s.subject_id, s.case_info FROM custody_identifiers i"
        " JOIN custody_subjects s ON s.agency_id = i.agency_id AND s.subject_id = i.subject_id"
        " WHERE i.agency_id = $1 AND i.identifier_kind = $2 AND i.identifier_value = $3 AND NOT s.sealed",
        agency_id,
        identifier.kind.value,
        normalise_identifier(identifier.value),
    )
    if subject is None:
        return None
    history = await connection.fetch(
        "SELECT status, facility, effective_at FROM custody_history WHERE agency_id = $1 AND subject_id = $2"
        " ORDER BY effective_at DESC, recorded_at DESC",
        agency_id,
        subject["subject_id"],
    )
    return CaseFile(
        case=None if subject["case_info"] is None else CaseInformation.model_validate(subject["case_info"]),
        history=[HistoryEntry.model_validate(dict(row)) for row in history],
    )
