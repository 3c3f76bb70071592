"""Creating and changing agencies: each change and the agency's new published profile commit together."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.ingest.agencies import store
from services.ingest.agencies.domain import Agency, AgencySettings, NewAgency, profile_of
from services.ingest.flows.events import publish
from services.ingest.settings import IngestSettings
from shared.db import Connection
from shared.topics import AGENCY_PROFILE


async def publish_profile(connection: Connection, settings: IngestSettings, agency: Agency) -> None:
    await publish(connection, settings, AGENCY_PROFILE, agency.agency_id, profile_of(agency))


async def create_agency(connection: Connection, settings: IngestSettings, values: Mapping[str, Any]) -> Agency | None:
    """Create an agency (fields not given take their defaults) and publish its profile; None when the id is taken.

    Raises pydantic's ``ValidationError`` when ``values`` are not a valid agency.
    """
    new = NewAgency.model_validate(values)
    async with connection.transaction():
        agency = await store.insert_agency(connection, new)
        if agency is not None:
            await publish_profile(connection, settings, agency)
        return agency


async def update_agency(
    connection: Connection, settings: IngestSettings, agency_id: str, changes: Mapping[str, Any]
) -> Agency | None:
    """Change some of an agency's settings and publish its profile; None when the agency is unknown.

    The changed agency is validated whole (``ValidationError`` when it is not valid) before it is written.
    """
    async with connection.transaction():
        current = await store.get_agency(connection, agency_id, for_update=True)
        if current is None:
            return None
        unknown = set(changes) - set(AgencySettings.model_fields)
        if unknown:
            raise ValueError(f"not agency settings: {sorted(unknown)}")
        changed = AgencySettings.model_validate(
            current.model_dump(include=set(AgencySettings.model_fields)) | dict(changes)
        )
        agency = await store.update_agency(connection, agency_id, changed, changes.keys())
        if agency is not None:
            await publish_profile(connection, settings, agency)
        return agency
