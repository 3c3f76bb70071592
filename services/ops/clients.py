"""The other services' admin APIs as ops calls them: ingest (feeds, storm holds, overrides), delivery (blocks) and
matching (counts).

Each failure becomes an :class:`UpstreamError` whose message an operator can read and whose ``status`` is the other
service's HTTP status (None when it could not be reached or its answer was not understood).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from services.ops.deliveries.domain import DeliveryNotice, StoppedNotice
from services.ops.feeds.domain import FeedHealth, FeedHealthFormatError, parse_feed_health, with_paused
from services.ops.overrides.domain import AgencyChoice, Override
from services.ops.settings import OpsSettings
from services.ops.storms.domain import HoldState, StormHold
from shared.events import DeliveryStatus

ModelT = TypeVar("ModelT", bound=BaseModel)


class MatchingCounts(BaseModel):
    """Matching's sizes for one agency (or all): shown to logged-in operators only, never to an agency."""

    active_subscriptions: int
    reachable_contacts: int
    subjects_with_status: int
    sealed_subjects: int
    notification_requests: int


class AnswerFormatError(ValueError):
    """Another service answered with something that is not the document its contract promises."""


def parse_items(model: type[ModelT], document: Any, what: str) -> list[ModelT]:
    """A JSON list of ``model``; says which item is wrong and why otherwise."""
    if not isinstance(document, list):
        raise AnswerFormatError(f"expected a list of {what}")
    return [parse_one(model, item, f"{what} #{index}") for index, item in enumerate(document)]


def parse_one(model: type[ModelT], document: Any, what: str) -> ModelT:
    try:
        return model.model_validate(document)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or what}: {e['msg']}" for e in error.errors())
        raise AnswerFormatError(f"{what}: {problems}") from None


FIELD_LABELS = {
    "person_number": "person number",
    "booking_number": "booking number",
    "case_numbers": "case number",
    "effective_at": "effective time",
    "effective_local": "effective time",
    "court_date": "court date",
    "court_date_local": "court date",
    "utc_offset": "UTC offset",
    "release_reason": "release reason",
    "transfer_destination": "transfer destination",
    "hold_id": "storm hold",
    "agency_id": "agency",
}


def explain_refusal(status_code: int, document: Any) -> str:
    """Another service's error answer in plain words for an operator (FastAPI's ``detail``, string or list)."""
    detail = document.get("detail") if isinstance(document, dict) else None
    if isinstance(detail, str) and detail.strip():
        return detail.strip()
    if isinstance(detail, list) and detail:
        problems = []
        for issue in detail:
            if not isinstance(issue, dict):
                problems.append(str(issue))
                continue
            location = [str(part) for part in issue.get("loc", []) if part not in {"body", "query", "path"}]
            field = FIELD_LABELS.get(location[0], location[0].replace("_", " ")) if location else ""
            message = str(issue.get("msg", "invalid")).removeprefix("Value error, ")
            problems.append(f"{field}: {message}" if field else message)
        return "; ".join(problems)
    return f"answered HTTP {status_code}"


class UpstreamError(RuntimeError):
    """Another service could not be reached or refused the request; the message says which, in plain words."""

    service: ClassVar[str] = "upstream"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class IngestError(UpstreamError):
    service = "ingest"


class DeliveryError(UpstreamError):
    service = "delivery"


class MatchingError(UpstreamError):
    service = "matching"


ResultT = TypeVar("ResultT")


def _path(value: str) -> str:
    return quote(value, safe="")


class _AdminClient:
    """One bearer-authenticated HTTP client; ``_call`` turns every failure into the service's error type."""

    error: type[UpstreamError] = UpstreamError

    @property
    def service(self) -> str:
        return self.error.service

    def __init__(self, base_url: str, token: str, timeout: float, transport: httpx.AsyncBaseTransport | None) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            transport=transport,
        )

    async def close(self) -> None:
        await self._client.aclose()

    def _parsed(self, parse: Callable[[], ResultT], what: str) -> ResultT:
        """The answer as ops' model, or the service's error naming what was not understood."""
        try:
            return parse()
        except AnswerFormatError as error:
            raise self.error(f"{self.service} {what} answer not understood: {error}") from None

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The answer's JSON on a 2xx; otherwise raise with the service's own explanation."""
        try:
            response = await self._client.request(method, path, **kwargs)
        except httpx.TimeoutException as error:
            raise self.error(
                f"{self.service} did not answer in time ({type(error).__name__}); the request may still take effect:"
                " check its state before trying again"
            ) from None
        except httpx.HTTPError as error:
            raise self.error(f"{self.service} unreachable: {type(error).__name__}") from None
        try:
            document = response.json() if response.content else None
        except ValueError:
            document = None
        if response.status_code in {401, 403}:
            raise self.error(
                f"{self.service} refused ops' admin token (HTTP {response.status_code}): check the ops settings",
                status=response.status_code,
            )
        if not response.is_success:
            raise self.error(explain_refusal(response.status_code, document), status=response.status_code)
        if document is None:
            raise self.error(f"{self.service} answered HTTP {response.status_code} without a JSON body")
        return document


class IngestClient(_AdminClient):
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
                f"/v1/admin/agencies/{_path(agency_id)}", json={"notices_paused": paused}
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
        document = await self._call("GET", f"/v1/admin/agencies/{_path(agency_id)}")
        return self._parsed(lambda: parse_one(AgencyChoice, document, "agency"), "agency")

    async def storm_holds(self, state: HoldState | None = None) -> list[StormHold]:
        params = {"state": state.value} if state is not None else None
        document = await self._call("GET", "/v1/admin/storm-holds", params=params)
        return self._parsed(lambda: parse_items(StormHold, document, "storm hold"), "storm-holds")

    async def storm_hold(self, hold_id: str) -> StormHold:
        document = await self._call("GET", f"/v1/admin/storm-holds/{_path(hold_id)}")
        return self._parsed(lambda: parse_one(StormHold, document, "storm hold"), "storm-hold")

    async def release_storm_hold(self, hold_id: str, *, operator: str) -> StormHold:
        document = await self._call(
            "POST",
            f"/v1/admin/storm-holds/{_path(hold_id)}/release",
            json={"operator": operator},
            timeout=self._decision_timeout,
        )
        return self._parsed(lambda: parse_one(StormHold, document, "storm hold"), "release")

    async def discard_storm_hold(self, hold_id: str, *, operator: str, reason: str) -> StormHold:
        document = await self._call(
            "POST",
            f"/v1/admin/storm-holds/{_path(hold_id)}/discard",
            json={"operator": operator, "reason": reason},
            timeout=self._decision_timeout,
        )
        return self._parsed(lambda: parse_one(StormHold, document, "storm hold"), "discard")

    async def create_override(self, agency_id: str, body: dict[str, Any]) -> Override:
        document = await self._call(
            "POST", f"/v1/admin/agencies/{_path(agency_id)}/overrides", json=body, timeout=self._decision_timeout
        )
        return self._parsed(lambda: parse_one(Override, document, "override"), "override")

    async def resources(self, agency_id: str) -> dict[str, Any]:
        document = await self._call("GET", f"/v1/admin/agencies/{_path(agency_id)}")
        resources = document.get("resources") if isinstance(document, dict) else None
        if not isinstance(resources, dict):
            raise IngestError("ingest answered an agency without its resources")
        return resources

    async def replace_resources(self, agency_id: str, body: dict[str, Any]) -> None:
        await self._call("PUT", f"/v1/admin/agencies/{_path(agency_id)}/resources", json=body)

    async def overrides(self, agency_id: str) -> list[Override]:
        document = await self._call("GET", f"/v1/admin/agencies/{_path(agency_id)}/overrides")
        return self._parsed(lambda: parse_items(Override, document, "override"), "overrides")


class DeliveryClient(_AdminClient):
    error = DeliveryError

    def __init__(self, settings: OpsSettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(
            settings.delivery_url, settings.delivery_operator_token, settings.delivery_timeout_seconds, transport
        )

    async def pending_notices(self, case: str) -> list[DeliveryNotice]:
        """Notices of a case that delivery holds and has not handed off yet (ops learns of a notice at hand-off)."""
        document = await self._call(
            "GET", "/v1/notifications", params={"case": case, "status": DeliveryStatus.CREATED.value, "limit": 100}
        )
        items = document.get("notifications") if isinstance(document, dict) else None
        return self._parsed(lambda: parse_items(DeliveryNotice, items, "notification"), "notification list")

    async def notice(self, notification_id: str) -> DeliveryNotice:
        document = await self._call("GET", f"/v1/notifications/{_path(notification_id)}")
        return self._parsed(lambda: parse_one(DeliveryNotice, document, "notification"), "notification")

    async def stop_notification(self, notification_id: str) -> StoppedNotice:
        """Block a notice: delivery makes no further attempt (it answers 200 also for one that had ended)."""
        document = await self._call("POST", f"/v1/notifications/{_path(notification_id)}/stop")
        return self._parsed(lambda: parse_one(StoppedNotice, document, "notification"), "stop")


class MatchingClient(_AdminClient):
    error = MatchingError

    def __init__(self, settings: OpsSettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(
            settings.matching_url, settings.matching_operator_token, settings.matching_timeout_seconds, transport
        )

    async def counts(self, agency_id: str | None) -> MatchingCounts:
        params = {"agency_id": agency_id} if agency_id is not None else None
        document = await self._call("GET", "/v1/matching/stats", params=params)
        return self._parsed(lambda: parse_one(MatchingCounts, document, "stats"), "stats")
