"""Ingest's admin API as ops calls it: feed health, agencies and their resources, storm holds, overrides."""

from __future__ import annotations

from typing import Any

import httpx

from services.ops.clients.base import AdminClient, UpstreamError, parse_items, parse_one, path_part
from services.ops.feeds.domain import FeedHealth, FeedHealthFormatError, parse_feed_health, with_paused
from services.ops.overrides.domain import AgencyChoice, Override
from services.ops.settings import OpsSettings
from services.ops.storms.domain import HoldState, StormHold


class IngestError(UpstreamError):
    service = "ingest"


class IngestClient(AdminClient):
    error = IngestError

    def __init__(self, settings: OpsSettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(settings.ingest_url, settings.ingest_admin_token, settings.ingest_timeout_seconds, transport)
        self._decision_timeout = settings.ingest_decision_timeout_seconds

    async def feed_health(self) -> list[FeedHealth]:
        try:
            response = await self._client.get("/v1/admin/feed-health")
        except httpx.HTTPError as error:
            raise IngestError(f"ingest unreachable: {type(error).__name__}") from None
        if response.status_code != 200:
            raise IngestError(f"ingest feed-health answered {response.status_code}", status=response.status_code)
        try:
            feeds = parse_feed_health(response.json())
        except (ValueError, FeedHealthFormatError) as error:
            raise IngestError(f"ingest feed-health answer not understood: {error}") from None
        return with_paused(feeds, await self._paused_flags())

    async def _paused_flags(self) -> dict[str, bool]:
        """Each agency's notices_paused from the agency list; empty (flags unknown) if that list is unavailable."""
        try:
            response = await self._client.get("/v1/admin/agencies")
            agencies = response.json() if response.status_code == 200 else []
        except (httpx.HTTPError, ValueError):
            return {}
        if not isinstance(agencies, list):
            return {}
        return {
            str(agency["agency_id"]): bool(agency["notices_paused"])
            for agency in agencies
            if isinstance(agency, dict) and "agency_id" in agency and isinstance(agency.get("notices_paused"), bool)
        }

    async def set_notices_paused(self, agency_id: str, *, paused: bool) -> None:
        try:
            response = await self._client.patch(
                f"/v1/admin/agencies/{path_part(agency_id)}", json={"notices_paused": paused}
            )
        except httpx.HTTPError as error:
            raise IngestError(f"ingest unreachable: {type(error).__name__}") from None
        if response.status_code >= 300:
            raise IngestError(
                f"ingest refused the change ({response.status_code}): {response.text[:200]}",
                status=response.status_code,
            )

    async def agencies(self) -> list[AgencyChoice]:
        document = await self._call("GET", "/v1/admin/agencies")
        return self._parsed(lambda: parse_items(AgencyChoice, document, "agency"), "agency list")

    async def agency(self, agency_id: str) -> AgencyChoice:
        document = await self._call("GET", f"/v1/admin/agencies/{path_part(agency_id)}")
        return self._parsed(lambda: parse_one(AgencyChoice, document, "agency"), "agency")

    async def storm_holds(self, state: HoldState | None = None) -> list[StormHold]:
        params = {"state": state.value} if state is not None else None
        document = await self._call("GET", "/v1/admin/storm-holds", params=params)
        return self._parsed(lambda: parse_items(StormHold, document, "storm hold"), "storm-holds")

    async def storm_hold(self, hold_id: str) -> StormHold:
        document = await self._call("GET", f"/v1/admin/storm-holds/{path_part(hold_id)}")
        return self._parsed(lambda: parse_one(StormHold, document, "storm hold"), "storm-hold")

    async def release_storm_hold(self, hold_id: str, *, operator: str) -> StormHold:
        document = await self._call(
            "POST",
            f"/v1/admin/storm-holds/{path_part(hold_id)}/release",
            json={"operator": operator},
            timeout=self._decision_timeout,
        )
        return self._parsed(lambda: parse_one(StormHold, document, "storm hold"), "release")

    async def discard_storm_hold(self, hold_id: str, *, operator: str, reason: str) -> StormHold:
        document = await self._call(
            "POST",
            f"/v1/admin/storm-holds/{path_part(hold_id)}/discard",
            json={"operator": operator, "reason": reason},
            timeout=self._decision_timeout,
        )
        return self._parsed(lambda: parse_one(StormHold, document, "storm hold"), "discard")

    async def create_override(self, agency_id: str, body: dict[str, Any]) -> Override:
        document = await self._call(
            "POST", f"/v1/admin/agencies/{path_part(agency_id)}/overrides", json=body, timeout=self._decision_timeout
        )
        return self._parsed(lambda: parse_one(Override, document, "override"), "override")

    async def resources(self, agency_id: str) -> dict[str, Any]:
        document = await self._call("GET", f"/v1/admin/agencies/{path_part(agency_id)}")
        resources = document.get("resources") if isinstance(document, dict) else None
        if not isinstance(resources, dict):
            raise IngestError("ingest answered an agency without its resources")
        return resources

    async def replace_resources(self, agency_id: str, body: dict[str, Any]) -> None:
        await self._call("PUT", f"/v1/admin/agencies/{path_part(agency_id)}/resources", json=body)

    async def overrides(self, agency_id: str) -> list[Override]:
        document = await self._call("GET", f"/v1/admin/agencies/{path_part(agency_id)}/overrides")
        return self._parsed(lambda: parse_items(Override, document, "override"), "overrides")
