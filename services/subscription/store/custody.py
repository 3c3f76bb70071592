"""What ingest last said about each subject: statuses and identifiers for the lookup, names for the search,
seals, and the case information and custody history verified subscribers see."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from services.subscription.domain.case import CaseFile, CustodyView, HistoryEntry
from services.subscription.domain.names import HELD_NOW, NameMatch, name_words
from shared.columns import column_list
from shared.db import Connection
from shared.events import CaseInformation, CustodyStatusChanged, SubjectIdentifier
from shared.vocabulary import normalise_identifier

_VIEW_COLUMNS = column_list(CustodyView, alias="s")
_NAME_COLUMNS = column_list(NameMatch, without=("identifier",), alias="s")
_HISTORY_COLUMNS = column_list(HistoryEntry)


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


async def record_custody_status(connection: Connection, change: CustodyStatusChanged, now: datetime) -> None:
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
        change.agency_id,
        change.subject_id,
        change.status.value,
        change.facility,
        change.effective_at,
        now,
        change.display_name,
        name_words(change.display_name),
        change.date_of_birth,
    )


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
        f"""
        SELECT {_NAME_COLUMNS}, i.identifier_kind, i.identifier_value
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
        """,  # noqa: S608 - column names from the model
        agency_id,
        list(words),
        [status.value for status in HELD_NOW],
        released_since,
        limit,
        birth_date,
    )
    return [
        NameMatch.model_validate(
            {**dict(row), "identifier": {"kind": row["identifier_kind"], "value": row["identifier_value"]}}
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
        f"""
        SELECT {_VIEW_COLUMNS} FROM custody_identifiers i
        JOIN custody_subjects s ON s.agency_id = i.agency_id AND s.subject_id = i.subject_id
        WHERE i.agency_id = $1 AND i.identifier_kind = $2 AND i.identifier_value = $3
            AND NOT s.sealed AND s.status IS NOT NULL
        """,  # noqa: S608 - column names from the model
        agency_id,
        identifier.kind.value,
        identifier.value,
    )
    return None if row is None else CustodyView.model_validate(dict(row))


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
        f"SELECT {_HISTORY_COLUMNS} FROM custody_history"  # noqa: S608 - column names from the model
        " WHERE agency_id = $1 AND subject_id = $2 ORDER BY effective_at DESC, recorded_at DESC",
        agency_id,
        subject["subject_id"],
    )
    return CaseFile(
        case=None if subject["case_info"] is None else CaseInformation.model_validate(subject["case_info"]),
        history=[HistoryEntry.model_validate(dict(row)) for row in history],
    )
