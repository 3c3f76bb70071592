"""Inbound SMS already handled (Twilio's MessageSid), so a replayed webhook has no second effect."""

from __future__ import annotations

from datetime import datetime

from shared.db import Connection


async def claim_inbound_sms(connection: Connection, message_sid: str, keyword: str) -> bool:
    claimed = await connection.fetchval(
        "INSERT INTO inbound_sms (message_sid, keyword) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
        message_sid,
        keyword,
    )
    return bool(claimed)


async def forget_inbound_sms(connection: Connection, before: datetime) -> None:
    await connection.execute("DELETE FROM inbound_sms WHERE received_at < $1", before)
