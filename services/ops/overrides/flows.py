"""What the override and contacts pages need of ingest besides their own answers."""

from __future__ import annotations

from services.ops.clients.ingest import IngestClient, IngestError
from services.ops.overrides.domain import AgencyChoice


async def agency_choices(ingest: IngestClient, problems: list[str]) -> list[AgencyChoice]:
    """The agencies to pick from; none, with the problem noted for the page, when ingest cannot say."""
    try:
        return await ingest.agencies()
    except IngestError as error:
        problems.append(f"Agencies unavailable: {error}")
        return []
