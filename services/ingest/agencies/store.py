"""The agencies table. Its column list is the :class:`Agency` model's field list."""

from __future__ import annotations

from collections.abc import Collection

from services.ingest.agencies.domain import AGENCY_COLUMNS, Agency, AgencySettings, NewAgency
from shared.db import Connection


async def insert_agency(connection: Connection, agency: NewAgency) -> Agency | None:
    """Create an agency; None when the id is taken."""
    values = agency.model_dump(mode="json")
    columns = list(values)
    placeholders = ", ".join(f"${n}" for n in range(1, len(columns) + 1))
    row = await connection.fetchrow(
        f"INSERT INTO agencies ({', '.join(columns)}) VALUES ({placeholders})"  # noqa: S608 - the model's fields
        f" ON CONFLICT (agency_id) DO NOTHING RETURNING {AGENCY_COLUMNS}",
        *values.values(),
    )
    return Agency.model_validate(dict(row)) if row else None


async def update_agency(
    connection: Connection, agency_id: str, settings: AgencySettings, columns: Collection[str]
) -> Agency | None:
    """Write ``columns`` of ``settings`` (and ``updated_at``) to the agency; None when there is no such agency."""
    values = settings.model_dump(mode="json", include=set(columns))
    assignments = "".join(f"{column} = ${n}, " for n, column in enumerate(values, start=2))
    row = await connection.fetchrow(
        f"UPDATE agencies SET {assignments}updated_at = now()"  # noqa: S608 - the model's fields
        f" WHERE agency_id = $1 RETURNING {AGENCY_COLUMNS}",
        agency_id,
        *values.values(),
    )
    return Agency.model_validate(dict(row)) if row else None


async def get_agency(connection: Connection, agency_id: str, *, for_update: bool = False) -> Agency | None:
    """``for_update`` serialises work on one agency; NO KEY UPDATE leaves foreign-key checks (KEY SHARE) unblocked."""
    lock = " FOR NO KEY UPDATE" if for_update else ""
    row = await connection.fetchrow(
        f"SELECT {AGENCY_COLUMNS} FROM agencies WHERE agency_id = $1{lock}",  # noqa: S608
        agency_id,
    )
    return Agency.model_validate(dict(row)) if row else None


async def list_agencies(connection: Connection) -> list[Agency]:
    rows = await connection.fetch(f"SELECT {AGENCY_COLUMNS} FROM agencies ORDER BY agency_id")  # noqa: S608
    return [Agency.model_validate(dict(row)) for row in rows]
