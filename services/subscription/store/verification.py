"""Verification codes, stored as keyed hashes; one row per issued code."""

from __future__ import annotations

from datetime import datetime

from services.subscription.domain.verification import Challenge
from shared.columns import column_list, fields_of, placeholders
from shared.db import Connection
from shared.vocabulary import Channel

_CHALLENGE_FIELDS = fields_of(Challenge)
_CHALLENGE_COLUMNS = column_list(Challenge)


async def next_code_issue(connection: Connection, subscription_id: str, channel: Channel) -> int:
    value = await connection.fetchval(
        "SELECT coalesce(max(issue), 0) + 1 FROM verification_codes WHERE subscription_id = $1 AND channel = $2",
        subscription_id,
        channel.value,
    )
    return int(value)


async def insert_code(connection: Connection, subscription_id: str, channel: Channel, challenge: Challenge) -> None:
    await connection.execute(
        f"INSERT INTO verification_codes (subscription_id, channel, {_CHALLENGE_COLUMNS})"  # noqa: S608 - from the model
        f" VALUES ({placeholders(2 + len(_CHALLENGE_FIELDS))})",
        subscription_id,
        channel.value,
        *(getattr(challenge, name) for name in _CHALLENGE_FIELDS),
    )


async def latest_code(connection: Connection, subscription_id: str, channel: Channel) -> Challenge | None:
    """The newest code of a contact point, locked: concurrent guesses are counted one after another."""
    row = await connection.fetchrow(
        f"SELECT {_CHALLENGE_COLUMNS} FROM verification_codes"  # noqa: S608 - column names from the model
        " WHERE subscription_id = $1 AND channel = $2 ORDER BY issue DESC LIMIT 1 FOR UPDATE",
        subscription_id,
        channel.value,
    )
    return None if row is None else Challenge.model_validate(dict(row))


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
