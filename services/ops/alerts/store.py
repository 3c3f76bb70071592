"""Alerts in SQL: each received once, the newest listed first."""

from __future__ import annotations

from services.ops.alerts.domain import Alert
from shared.columns import column_list
from shared.db import Connection
from shared.events import OpsAlert


async def record_alert(connection: Connection, event_id: str, source: str, alert: OpsAlert) -> bool:
    inserted = await connection.fetchval(
        "INSERT INTO alerts (event_id, source, kind, agency_id, message, at) VALUES ($1, $2, $3, $4, $5, $6)"
        " ON CONFLICT (event_id) DO NOTHING RETURNING true",
        event_id,
        source,
        alert.kind,
        alert.agency_id,
        alert.message,
        alert.at,
    )
    return bool(inserted)


async def recent_alerts(connection: Connection, limit: int = 20) -> list[Alert]:
    rows = await connection.fetch(
        f"SELECT {column_list(Alert)} FROM alerts ORDER BY at DESC LIMIT $1",  # noqa: S608 - columns of a model
        limit,
    )
    return [Alert.model_validate(dict(row)) for row in rows]
