"""One Twilio account's REST API (or anything speaking its shape, such as the local sinks): the one place for its
authentication, its JSON answers and error shape, and its paged lists.

``{base_url}/2010-04-01/Accounts/{sid}/{Resource}.json``, form-encoded, HTTP basic auth. Lists are newest first and
paged by ``next_page_uri``; a search reads back until entries older than what it looks for. Never logs a phone
number or a body.

The client is aiohttp, not httpx: at the send slots' concurrency httpx cost 2.4 ms of CPU per request here and
aiohttp 0.31 ms (the README's Performance section). aiohttp never resends a POST on its own (it retries a kept-alive
connection only for idempotent methods), so a message is created at most once per call.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
from yarl import URL

from services.delivery.providers.base import (
    AMBIGUOUS_ERROR_CODE,
    PermanentProviderError,
    TemporaryProviderError,
)

logger = logging.getLogger(__name__)

LIST_PAGE_SIZE = 50
LIST_MAX_PAGES = 20
CLOCK_SKEW = timedelta(minutes=2)
"""Twilio's ``date_created`` and our clock may disagree a little: a search reaches back this much further."""


def error_code(document: Mapping[str, Any] | None) -> str | None:
    """Twilio's JSON error shape is ``{"code": 21610, "message": ..., "status": 400}``."""
    return str(document["code"]) if document and document.get("code") is not None else None


def created_at(entry: Mapping[str, Any]) -> datetime | None:
    """Twilio's ``date_created`` (RFC 2822, GMT), or None if absent or unreadable."""
    value = entry.get("date_created")
    if not isinstance(value, str):
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


def _document(body: bytes) -> dict[str, Any] | None:
    try:
        document: Any = json.loads(body)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _form_fields(form: Mapping[str, str | Sequence[str]]) -> list[tuple[str, str]]:
    """A form as ordered pairs, a list value as the repeated field Twilio expects (``StatusCallbackEvent``)."""
    return [(key, item) for key, value in form.items() for item in ([value] if isinstance(value, str) else value)]


NOT_SENT_ERRORS = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
"""No connection was made (refused, unresolvable, or none free within the timeout): the request never left."""
TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError)


class TwilioRest:
    """Requests to one account; ``name`` is the configured provider's, which every error message starts with."""

    def __init__(
        self,
        *,
        name: str,
        account_sid: str,
        auth_token: str,
        base_url: str,
        timeout: float,
        max_connections: int = 100,
    ) -> None:
        """``max_connections``: as many as sends run at once, all kept alive (no reconnect per request)."""
        self.name = name
        self._base_url = base_url.rstrip("/")
        self._account_url = f"{self._base_url}/2010-04-01/Accounts/{account_sid}"
        self._headers = {"Authorization": aiohttp.encode_basic_auth(account_sid, auth_token)}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        """The session, made on first use: aiohttp binds it to the running event loop."""
        if self._session is None:
            # An idle connection is dropped after 4 s, before a server's keep-alive (uvicorn's is 5 s) can close it
            # under a POST: that would be an ambiguous answer, costing the notice a search of the provider's list.
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, limit_per_host=self._max_connections, keepalive_timeout=4.0
            )
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, headers=self._headers, raise_for_status=False
            )
        return self._session

    async def _request(
        self,
        method: str,
        url: str | URL,
        *,
        form: list[tuple[str, str]] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes]:
        async with self._client().request(method, url, data=form, params=params) as response:
            return response.status, await response.read()

    async def create(
        self, resource: str, form: Mapping[str, str | Sequence[str]], *, temporary_codes: frozenset[str]
    ) -> dict[str, Any]:
        """``POST {Resource}.json``: the created resource (with its ``sid``), or the provider error that says why not;
        ``temporary_codes`` are Twilio's codes of conditions that may clear by themselves (worth retrying).

        A request that never left (no connection) is a plain temporary error, safe to send elsewhere at once; one
        that may have reached Twilio (no answer, an unreadable answer) is ambiguous (:data:`AMBIGUOUS_ERROR_CODE`).
        """
        try:
            status, body = await self._request("POST", f"{self._account_url}/{resource}.json", form=_form_fields(form))
        except NOT_SENT_ERRORS as error:
            raise TemporaryProviderError(f"{self.name}: connection failed ({type(error).__name__})") from None
        except TRANSPORT_ERRORS as error:
            raise TemporaryProviderError(
                f"{self.name}: no answer ({type(error).__name__})", code=AMBIGUOUS_ERROR_CODE
            ) from None
        document = _document(body)
        if status in (200, 201):
            if document is None or not isinstance(document.get("sid"), str):
                raise TemporaryProviderError(
                    f"{self.name}: accepted with an unreadable answer", code=AMBIGUOUS_ERROR_CODE
                )
            return document
        code = error_code(document)
        message = document.get("message") if document else None
        reason = f"{self.name}: HTTP {status}" + (f": {message}" if isinstance(message, str) else "")
        logger.info(
            "twilio refused a request",
            extra={
                "provider": self.name,
                "resource": resource,
                "http_status": status,
                "error_code": code,
            },
        )
        # 401/403: our credentials are wrong; no number is at fault, and fixing the configuration makes a retry work.
        if status in (401, 403, 429) or status >= 500 or code in temporary_codes:
            raise TemporaryProviderError(reason, code=code or str(status))
        raise PermanentProviderError(reason, code=code or str(status))

    async def fetch_status(self, resource: str, sid: str) -> str | None:
        """``GET {Resource}/{sid}.json``: its ``status`` (to reconcile); None if unknown or unreachable."""
        try:
            http_status, body = await self._request("GET", f"{self._account_url}/{resource}/{sid}.json")
        except TRANSPORT_ERRORS as error:
            logger.warning(
                "twilio status lookup failed",
                extra={"provider": self.name, "resource": resource, "error": type(error).__name__},
            )
            return None
        document = _document(body) if http_status == 200 else None
        status = document.get("status") if document else None
        return status if isinstance(status, str) else None

    async def created_since(self, resource: str, *, to: str, from_number: str, since: datetime) -> list[dict[str, Any]]:
        """Every entry of ``GET {Resource}.json?To=…&From=…`` created at or after ``since`` (less the clock skew),
        newest first. Raises an ambiguous :class:`TemporaryProviderError` when Twilio cannot tell now: the caller
        must not send again then.

        The list's ``DateSent`` filters are not used: they compare GMT *dates* of sending, and a message still queued
        has no sent date.
        """
        key = resource.lower()
        url: str | None = f"{self._account_url}/{resource}.json"
        params: dict[str, str] | None = {"To": to, "From": from_number, "PageSize": str(LIST_PAGE_SIZE)}
        oldest_wanted = since - CLOCK_SKEW
        found: list[dict[str, Any]] = []
        for _ in range(LIST_MAX_PAGES):
            if url is None:
                return found
            page = await self._list_page(url, params, key)
            entries = page.get(key)
            if not isinstance(entries, list):
                raise TemporaryProviderError(f"{self.name}: unreadable {key} list", code=AMBIGUOUS_ERROR_CODE)
            moments = [created_at(entry) if isinstance(entry, dict) else None for entry in entries]
            found += [
                entry
                for entry, moment in zip(entries, moments, strict=True)
                if isinstance(entry, dict)
                and isinstance(entry.get("sid"), str)
                and (moment is None or moment >= oldest_wanted)
            ]
            if not entries or any(moment is not None and moment < oldest_wanted for moment in moments):
                return found  # newest first: the rest is older than what is looked for
            next_page = page.get("next_page_uri")
            url = f"{self._base_url}{next_page}" if isinstance(next_page, str) and next_page else None
            params = None
        raise TemporaryProviderError(f"{self.name}: too many {key} to search", code=AMBIGUOUS_ERROR_CODE)

    async def _list_page(self, url: str, params: dict[str, str] | None, key: str) -> dict[str, Any]:
        try:
            # A next page's address comes from Twilio already encoded: sent as it is.
            status, body = await self._request("GET", URL(url, encoded=params is None), params=params)
        except TRANSPORT_ERRORS as error:
            raise TemporaryProviderError(
                f"{self.name}: {key} list unreachable ({type(error).__name__})", code=AMBIGUOUS_ERROR_CODE
            ) from None
        document = _document(body) if status == 200 else None
        if document is None:
            raise TemporaryProviderError(f"{self.name}: {key} list HTTP {status}", code=AMBIGUOUS_ERROR_CODE)
        return document

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
