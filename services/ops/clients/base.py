"""What every client of another service's admin API shares: bearer authentication, and each failure turned into an
:class:`UpstreamError` whose message an operator can read and whose ``status`` is the other service's HTTP status
(None when it could not be reached or its answer was not understood)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)


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


ResultT = TypeVar("ResultT")


def path_part(value: str) -> str:
    return quote(value, safe="")


class AdminClient:
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
