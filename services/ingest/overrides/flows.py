"""Operator overrides: a custody status set by hand goes through the same change detection as a feed record."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

import asyncpg

from services.ingest import metrics
from services.ingest.agencies import store as agencies_store
from services.ingest.domain.changes import RecordResult
from services.ingest.flows.batches import apply_records
from services.ingest.overrides import store
from services.ingest.overrides.domain import RESULT_OF_OVERRIDE, OverrideRequest, override_record
from services.ingest.overrides.store import StoredOverride
from services.ingest.settings import IngestSettings
from services.ingest.store import subjects as subjects_store

log = logging.getLogger(__name__)


class OverrideRejectedError(ValueError):
    """The override cannot be applied (its identifiers name two subjects); the message says why."""


async def apply_override(
    pool: asyncpg.Pool, settings: IngestSettings, agency_id: str, request: OverrideRequest
) -> StoredOverride | None:
    """Apply an operator's status like a feed record (never held); None when the agency is unknown."""
    override_id = str(uuid.uuid4())
    record = override_record(override_id, request)
    now = datetime.now(UTC)
    async with pool.acquire() as connection, connection.transaction():
        agency = await agencies_store.get_agency(connection, agency_id, for_update=True)
        if agency is None:
            return None
        applied = await apply_records(
            connection,
            settings,
            agency,
            [(0, record)],
            batch_id=override_id,
            received_at=now,
            origin="operator_override",
        )
        outcome = applied.outcomes[0]
        subject_id = await subjects_store.subject_of_record(connection, agency_id, record.record_id)
        if subject_id is None:
            raise OverrideRejectedError(str(outcome["reason"]))
        override = StoredOverride(
            override_id=override_id,
            agency_id=agency_id,
            subject_id=str(subject_id),
            result=RESULT_OF_OVERRIDE[RecordResult(outcome["result"])],
            event_id=outcome["event_id"],
            status=record.status.value,
            effective_at=record.effective_at,
            operator=request.operator,
            reason=request.reason,
            created_at=now,
        )
        await store.insert_override(connection, override)
    metrics.OVERRIDES.labels(agency_id, override.result).inc()
    log.warning(
        "operator override %s of agency %s: %s (%s) by %s",
        override_id,
        agency_id,
        override.status,
        override.result,
        request.operator,
    )
    return override
