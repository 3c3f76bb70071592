"""Alerts in SQL: each received once, the newest listed first."""

from __future__ import annotations

from collections.abc import Sequence

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


async def record_alerts(connection: Connection, alerts: Sequence[tuple[str, str, OpsAlert]]) -> None:
    """:func:`record_alert` for a batch of (event id, source, alert) in one statement."""
    if not alerts:
        return
    await connection.execute(
        "INSERT INTO alerts (event_id, source, kind, agency_id, message, at)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])"
        " ON CONFLICT (event_id) DO NOTHING",
        [event_id for event_id, _, _ in alerts],
        [source for _, source, _ in alerts],
        [alert.kind for _, _, alert in alerts],
        [alert.agency_id for _, _, alert in alerts],
        [alert.message for _, _, alert in alerts],
        [alert.at for _, _, alert in alerts],
    )


async def recent_alerts(connection: Connection, limit: int = 20) -> list[Alert]:
    rows = await connection.fetch(
        f"SELECT {column_list(Alert)} FROM alerts ORDER BY at DESC LIMIT $1",  # noqa: S608 - columns of a model
        limit,
    )
    return [Alert.model_validate(dict(row)) for row in rows]
