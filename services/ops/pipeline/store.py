"""Replays in SQL: each dead letter is replayed once."""

from __future__ import annotations

from services.ops.pipeline.domain import Replay
from shared.columns import column_list
from shared.db import Connection


async def claim_replay(
    connection: Connection, topic: str, partition: int, offset: int, *, target: str, username: str
) -> bool:
    """False when this dead letter was replayed already."""
    claimed = await connection.fetchval(
        'INSERT INTO replays (topic, partition, "offset", target, username) VALUES ($1, $2, $3, $4, $5)'
        " ON CONFLICT DO NOTHING RETURNING true",
        topic,
        partition,
        offset,
        target,
        username,
    )
    return bool(claimed)


async def replayed_offsets(connection: Connection) -> dict[tuple[str, int, int], Replay]:
    rows = await connection.fetch(f"SELECT {column_list(Replay)} FROM replays")  # noqa: S608 - columns of a model
    replays = [Replay.model_validate(dict(row)) for row in rows]
    return {(replay.topic, replay.partition, replay.offset): replay for replay in replays}
