"""Matching's operator API as ops calls it: its counts."""

from __future__ import annotations

import httpx
from pydantic import BaseModel

from services.ops.clients.base import AdminClient, UpstreamError, parse_one
from services.ops.settings import OpsSettings


class MatchingError(UpstreamError):
    service = "matching"


class MatchingCounts(BaseModel):
    """Matching's sizes for one agency (or all): shown to logged-in operators only, never to an agency."""

    active_subscriptions: int
    reachable_contacts: int
    subjects_with_status: int
    sealed_subjects: int
    notification_requests: int


class MatchingClient(AdminClient):
    error = MatchingError

    def __init__(self, settings: OpsSettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(
            settings.matching_url, settings.matching_operator_token, settings.matching_timeout_seconds, transport
        )

    async def counts(self, agency_id: str | None) -> MatchingCounts:
        params = {"agency_id": agency_id} if agency_id is not None else None
        document = await self._call("GET", "/v1/matching/stats", params=params)
        return self._parsed(lambda: parse_one(MatchingCounts, document, "stats"), "stats")
