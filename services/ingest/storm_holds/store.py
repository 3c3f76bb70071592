"""Storm holds and the events they keep back, with each held subject's state before the hold touched it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from shared.db import Connection
from shared.outbox import NOTIFY_CHANNEL
from shared.vocabulary import URGENT_STATUSES


@dataclass(frozen=True)
class HeldEvent:
    """One custody event kept back by a storm hold, encoded exactly as it will be published."""

    event_id: str
    subject_id: str
    topic: str
    key: str
    value: bytes
    status: str
    urgent: bool


class StormHold(BaseModel):
    """A hold as the admin API and the decision need it: its counts and its first held records."""

    hold_id: str
    agency_id: str
    state: str
    opened_at: datetime
    trigger: str
    decided_at: datetime | None
    decided_by: str | None
    decision_reason: str | None
    held_changes: int
    urgent_changes: int
    by_status: dict[str, int]
    samples: list[dict[str, Any]]


HOLD_QUERY = (
    "SELECT h.hold_id::text, h.agency_id, h.state, h.opened_at, h.trigger, h.decided_at, h.decided_by,"
    " h.decision_reason, c.held AS held_changes, c.urgent AS urgent_changes,"
    " coalesce(c.by_status, '{}'::jsonb) AS by_status, coalesce(s.samples, '[]'::jsonb) AS samples FROM storm_holds h"
    " CROSS JOIN LATERAL (SELECT count(*) AS held, count(*) FILTER (WHERE urgent) AS urgent,"
    "   (SELECT jsonb_object_agg(status, n) FROM (SELECT status, count(*) AS n FROM held_events"
    "     WHERE hold_id = h.hold_id GROUP BY status) AS g) AS by_status"
    "   FROM held_events e WHERE e.hold_id = h.hold_id) AS c"
    " CROSS JOIN LATERAL (SELECT jsonb_agg(sample ORDER BY seq) AS samples FROM (SELECT sample, seq FROM held_events"
    "   WHERE hold_id = h.hold_id ORDER BY seq LIMIT $1) AS t) AS s"
)
SAMPLES_PER_HOLD = 10


async def open_hold_of(connection: Connection, agency_id: str) -> str | None:
    hold_id: Any = await connection.fetchval(
        "SELECT hold_id::text FROM storm_holds WHERE agency_id = $1 AND state = 'holding'", agency_id
    )
    return None if hold_id is None else str(hold_id)


async def urgent_change_counts(
    connection: Connection, agency_id: str, window_start: datetime, baseline_start: datetime
) -> tuple[int, int]:
    """Urgent changes the agency's feed made since ``window_start``, and between ``baseline_start`` and then."""
    row = await connection.fetchrow(
        "SELECT count(*) FILTER (WHERE received_at > $2) AS recent, count(*) FILTER (WHERE received_at <= $2) AS before"
        " FROM custody_records WHERE agency_id = $1 AND event_id IS NOT NULL AND status = ANY($4::text[])"
        " AND received_at > $3 AND record_id NOT LIKE 'override:%'",
        agency_id,
        window_start,
        baseline_start,
        sorted(status.value for status in URGENT_STATUSES),
    )
    return (0, 0) if row is None else (int(row["recent"]), int(row["before"]))


async def last_hold_decision(connection: Connection, agency_id: str) -> datetime | None:
    """When an admin last released or discarded a hold of the agency: what came before is judged already."""
    decided: Any = await connection.fetchval("SELECT max(decided_at) FROM storm_holds WHERE agency_id = $1", agency_id)
    return decided if isinstance(decided, datetime) else None


async def open_hold(connection: Connection, hold_id: str, agency_id: str, opened_at: datetime, trigger: str) -> None:
    await connection.execute(
        "INSERT INTO storm_holds (hold_id, agency_id, state, opened_at, trigger) VALUES ($1, $2, 'holding', $3, $4)",
        hold_id,
        agency_id,
        opened_at,
        trigger,
    )


async def hold_events(connection: Connection, hold_id: str, events: Sequence[HeldEvent]) -> None:
    """Keep ``events`` back (in their order) and remember each subject's state before the hold first touched it."""
    if not events:
        return
    await connection.execute(
        "INSERT INTO held_subjects (hold_id, subject_id, before)"
        " SELECT $1, ids.id, CASE WHEN s.subject_id IS NULL THEN NULL ELSE to_jsonb(s) END"
        " FROM unnest($2::uuid[]) AS ids(id) LEFT JOIN subjects s ON s.subject_id = ids.id"
        " ON CONFLICT (hold_id, subject_id) DO NOTHING",
        hold_id,
        sorted({event.subject_id for event in events}),
    )
    await connection.execute(
        "INSERT INTO held_events (hold_id, event_id, subject_id, topic, key, value, status, urgent, sample)"
        " SELECT $1, i, s, t, k, v, st, u, jsonb_build_object('agency_record_id', d ->> 'agency_record_id',"
        "  'status', d ->> 'status', 'previous_status', d ->> 'previous_status', 'effective_at', d ->> 'effective_at',"
        "  'facility', d ->> 'facility', 'display_name', d ->> 'display_name')"
        " FROM unnest($2::text[], $3::uuid[], $4::text[], $5::text[], $6::bytea[], $7::text[], $8::boolean[])"
        " WITH ORDINALITY AS e(i, s, t, k, v, st, u, n)"
        " CROSS JOIN LATERAL (SELECT convert_from(v, 'UTF8')::jsonb -> 'data' AS d) AS event ORDER BY n",
        hold_id,
        [event.event_id for event in events],
        [event.subject_id for event in events],
        [event.topic for event in events],
        [event.key for event in events],
        [event.value for event in events],
        [event.status for event in events],
        [event.urgent for event in events],
    )


async def get_hold(connection: Connection, hold_id: str, *, for_update: bool = False) -> StormHold | None:
    if for_update:
        locked = await connection.fetchval("SELECT true FROM storm_holds WHERE hold_id = $1 FOR UPDATE", hold_id)
        if not locked:
            return None
    row = await connection.fetchrow(f"{HOLD_QUERY} WHERE h.hold_id = $2", SAMPLES_PER_HOLD, hold_id)
    return StormHold.model_validate(dict(row)) if row else None


async def list_holds(connection: Connection, state: str | None, limit: int = 100) -> list[StormHold]:
    rows = await connection.fetch(
        f"{HOLD_QUERY} WHERE ($2::text IS NULL OR h.state = $2) ORDER BY h.opened_at DESC LIMIT $3",
        SAMPLES_PER_HOLD,
        state,
        limit,
    )
    return [StormHold.model_validate(dict(row)) for row in rows]


async def decide_hold(connection: Connection, hold_id: str, state: str, operator: str, reason: str | None) -> None:
    await connection.execute(
        "UPDATE storm_holds SET state = $2, decided_at = now(), decided_by = $3, decision_reason = $4"
        " WHERE hold_id = $1 AND state = 'holding'",
        hold_id,
        state,
        operator,
        reason,
    )


async def publish_held_events(connection: Connection, hold_id: str) -> int:
    """Move the hold's events to the outbox in feed order (once: the outbox ignores an event id it has)."""
    status = await connection.execute(
        "INSERT INTO outbox (topic, key, event_id, value) SELECT topic, key, event_id, value FROM held_events"
        " WHERE hold_id = $1 ORDER BY seq ON CONFLICT (event_id) DO NOTHING",
        hold_id,
    )
    await connection.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
    return int(status.rsplit(" ", 1)[-1])


async def restore_held_subjects(connection: Connection, hold_id: str) -> int:
    """Put every subject the hold touched back as it was before, unless an operator has overridden it since."""
    restored = await connection.execute(
        "UPDATE subjects s SET display_name = b.display_name, facility = b.facility, status = b.status,"
        " release_reason = b.release_reason, transfer_destination = b.transfer_destination,"
        " court_date = b.court_date, effective_at = b.effective_at, sequence = b.sequence,"
        " in_custody = b.in_custody, last_record_id = b.last_record_id, overridden = b.overridden,"
        " case_info = b.case_info, transferred_to_agency_id = b.transferred_to_agency_id, updated_at = now()"
        " FROM held_subjects h CROSS JOIN LATERAL jsonb_populate_record(NULL::subjects, h.before) AS b"
        " WHERE h.hold_id = $1 AND h.before IS NOT NULL AND s.subject_id = h.subject_id AND NOT s.overridden",
        hold_id,
    )
    created = await connection.execute(
        "UPDATE subjects s SET status = NULL, release_reason = NULL, transfer_destination = NULL, court_date = NULL,"
        " effective_at = NULL, sequence = NULL, in_custody = false, case_info = NULL,"
        " transferred_to_agency_id = NULL, updated_at = now() FROM held_subjects h"
        " WHERE h.hold_id = $1 AND h.before IS NULL AND s.subject_id = h.subject_id AND NOT s.overridden",
        hold_id,
    )
    return sum(int(status.rsplit(" ", 1)[-1]) for status in (restored, created))
