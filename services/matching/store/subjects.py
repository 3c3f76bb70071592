"""The latest known custody state of each subject, every identifier an agency sent for it, and late stale changes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.matching.domain import CaseKey, ChangePosition, KnownCustodyState, case_key
from shared.db import Connection
from shared.events import CustodyStatusChanged, SubscriptionState
from shared.vocabulary import IdentifierKind

STATE_COLUMNS = ", ".join(f"c.{name}" for name in KnownCustodyState.model_fields)
"""The columns of ``custody_subjects`` (as ``c``) that make a :class:`KnownCustodyState`."""


def known_state(row: asyncpg.Record) -> KnownCustodyState:
    return KnownCustodyState.model_validate({name: row[name] for name in KnownCustodyState.model_fields})


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
    return await subject_keys(connection, change.agency_id, change.subject_id)


async def subject_keys(connection: Connection, agency_id: str, subject_id: str) -> list[CaseKey]:
    """Every identifier the agency ever sent for the subject."""
    rows = await connection.fetch(
        "SELECT identifier_kind, identifier_value FROM subject_identifiers"
        " WHERE agency_id = $1 AND subject_id = $2 ORDER BY identifier_kind, identifier_value",
        agency_id,
        subject_id,
    )
    return [(agency_id, IdentifierKind(row["identifier_kind"]), row["identifier_value"]) for row in rows]


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


async def known_state_of_subject(connection: Connection, agency_id: str, subject_id: str) -> KnownCustodyState | None:
    row = await connection.fetchrow(
        f"SELECT {STATE_COLUMNS} FROM custody_subjects c"  # noqa: S608 - names from the model
        " WHERE agency_id = $1 AND subject_id = $2 AND change IS NOT NULL",
        agency_id,
        subject_id,
    )
    return None if row is None else known_state(row)


async def known_states_for(connection: Connection, key: CaseKey) -> list[KnownCustodyState]:
    """The latest custody state of every (unsealed) subject the agency ever sent under this identifier."""
    rows = await connection.fetch(
        f"SELECT {STATE_COLUMNS} FROM subject_identifiers i"  # noqa: S608 - names from the model
        " JOIN custody_subjects c ON c.agency_id = i.agency_id AND c.subject_id = i.subject_id"
        " WHERE i.agency_id = $1 AND i.identifier_kind = $2 AND i.identifier_value = $3"
        "   AND c.change IS NOT NULL ORDER BY c.custody_event_id",
        key[0],
        str(key[1]),
        key[2],
    )
    return [known_state(row) for row in rows]


async def urgent_cases_of_agency(
    connection: Connection, agency_id: str, statuses: Sequence[str]
) -> list[tuple[SubscriptionState, KnownCustodyState]]:
    """Each active subscription of the agency with its case's latest known state, when that is one of ``statuses``."""
    rows = await connection.fetch(
        f"SELECT DISTINCT ON (s.subscription_id) s.state, {STATE_COLUMNS} FROM subscriptions s"  # noqa: S608
        " JOIN subject_identifiers i ON i.agency_id = s.agency_id AND i.identifier_kind = s.identifier_kind"
        "   AND i.identifier_value = s.identifier_value"
        " JOIN custody_subjects c ON c.agency_id = i.agency_id AND c.subject_id = i.subject_id"
        " WHERE s.agency_id = $1 AND s.status = 'active' AND c.change IS NOT NULL AND c.change ->> 'status' = ANY($2)"
        " ORDER BY s.subscription_id, c.effective_at DESC",
        agency_id,
        list(statuses),
    )
    return [(SubscriptionState.model_validate(row["state"]), known_state(row)) for row in rows]


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
