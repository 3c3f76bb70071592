"""Sealing a subject: from then on no event and no disclosure about it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from services.ingest import metrics
from services.ingest.agencies import store as agencies_store
from services.ingest.domain.events import event_key, stable_id
from services.ingest.domain.records import Identifier, sorted_identifiers
from services.ingest.flows.events import publish
from services.ingest.sealing import store
from services.ingest.settings import IngestSettings
from services.ingest.store import subjects as subjects_store
from shared.events import SubjectSealed
from shared.topics import SUBJECT_SEALED


class SealConflictError(ValueError):
    """The identifiers name more than one subject."""


@dataclass(frozen=True)
class Sealed:
    subject_id: str
    sealed_at: datetime
    identifiers: list[Identifier]


async def seal_subject(
    pool: asyncpg.Pool, settings: IngestSettings, agency_id: str, identifiers: Sequence[Identifier]
) -> Sealed:
    """Seal the subject the identifiers name (creating it if unknown, so later records are caught too)."""
    now = datetime.now(UTC)
    keys = {identifier.key for identifier in identifiers}
    async with pool.acquire() as connection, connection.transaction():
        await agencies_store.get_agency(connection, agency_id, for_update=True)
        owners = await store.find_subjects_by_identifiers(connection, agency_id, keys)
        if len(owners) > 1:
            raise SealConflictError("these identifiers belong to different subjects; seal each subject separately")
        if owners:
            subject_id = owners[0]
        else:
            subject_id = stable_id(f"sealed:{agency_id}/{sorted(keys)}")
            await store.create_sealed_subject(connection, agency_id, subject_id, now)
        await subjects_store.add_identifiers(connection, agency_id, subject_id, identifiers)
        sealed_at = await store.seal_subject(connection, subject_id, now)
        all_identifiers = await subjects_store.subject_identifiers(connection, subject_id)
        if sealed_at == now:
            payload = SubjectSealed(
                agency_id=agency_id,
                subject_id=subject_id,
                identifiers=sorted_identifiers(all_identifiers),
                sealed_at=sealed_at,
            )
            key = event_key(agency_id, subject_id)
            await publish(
                connection, settings, SUBJECT_SEALED, key, payload, event_id=stable_id(f"sealed:{key}"), at=now
            )
    async with pool.acquire() as connection:
        metrics.IN_CUSTODY.labels(agency_id).set(await subjects_store.in_custody_count(connection, agency_id))
    return Sealed(subject_id, sealed_at, all_identifiers)
