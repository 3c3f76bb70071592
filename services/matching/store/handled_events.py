"""Each consumed event, applied once, with the Kafka position it was first read at (``handled_events``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from shared.db import Connection


class SourcePosition(BaseModel):
    """Where a consumed event was first read: a replay of the same message has the same position."""

    model_config = ConfigDict(frozen=True)

    topic: str
    partition: int
    offset: int


POSITION_COLUMNS = ", ".join(f"source_{name}" for name in SourcePosition.model_fields)
POSITION_SELECTED = ", ".join(f"source_{name} AS {name}" for name in SourcePosition.model_fields)


async def claim_event(connection: Connection, event_id: str, position: SourcePosition) -> SourcePosition | None:
    """Record that matching applies ``event_id``; None when claimed now, else the position it was first read at."""
    claimed = await connection.fetchval(
        f"INSERT INTO handled_events (event_id, {POSITION_COLUMNS})"  # noqa: S608 - names from the model
        " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true",
        event_id,
        *position.model_dump().values(),
    )
    if claimed:
        return None
    row = await connection.fetchrow(
        f"SELECT {POSITION_SELECTED} FROM handled_events WHERE event_id = $1",  # noqa: S608 - names from the model
        event_id,
    )
    if row is None:  # only if someone deleted it between the two statements
        raise RuntimeError(f"handled event {event_id} vanished")
    return SourcePosition.model_validate(dict(row))
