"""HTTP to the services' public APIs, with refusals turned into sentences a person can act on."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from shared.backoff import Backoff

RETRIES = 4
"""A push is retried on a dropped connection or a 5xx/429: its idempotency key makes a repeat harmless."""
RETRY_BACKOFF = Backoff(initial=2.0, maximum=10.0)


REFUSALS = {403: "not allowed", 404: "not found", 409: "conflict", 413: "too large", 422: "refused as invalid"}


class CliError(RuntimeError):
    """Printed as it is, and the command exits with status 1."""


def detail_of(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    detail = body.get("detail") if isinstance(body, dict) else body
    if isinstance(detail, list):  # FastAPI's validation errors
        return "; ".join(
            f"{'.'.join(str(part) for part in item.get('loc', [])[1:])}: {item.get('msg')}"
            if isinstance(item, dict)
            else str(item)
            for item in detail
        )
    return str(detail)


def refusal(response: httpx.Response, *, credential: str, setting: str) -> CliError:
    """A clear message for a non-success answer; ``credential`` names what was sent (the API key, ...)."""
    code, detail = response.status_code, detail_of(response)
    if code == 401:
        return CliError(f"the {credential} was refused (401): {detail}. Check {setting}.")
    meaning = REFUSALS.get(code)
    return CliError(f"{meaning} ({code}): {detail}" if meaning else f"the service answered {code}: {detail}")


class Api:
    """One service's base URL and bearer credential."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        credential: str,
        setting: str,
        timeout: float = 120.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not token:
            raise CliError(f"no {credential}: pass {setting}")
        self.base_url = base_url.rstrip("/")
        self.credential, self.setting = credential, setting
        self.sleep = sleep
        self.http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "custody-watch-cli"},
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *_: object) -> None:
        self.http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        ok: Iterable[int] = (200, 201, 202),
        retry: bool = False,
        **kwargs: Any,
    ) -> Any:
        """The JSON answer; raises :class:`CliError` on a refusal or when the service cannot be reached."""
        attempts = RETRIES + 1 if retry else 1
        for attempt in range(1, attempts + 1):
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError as error:
                if attempt < attempts:
                    self.sleep(RETRY_BACKOFF.delay(attempt))
                    continue
                raise CliError(
                    f"cannot reach {self.base_url} ({type(error).__name__}: {error}); is the system running?"
                ) from None
            if retry and attempt < attempts and (response.status_code == 429 or response.status_code >= 500):
                wait = response.headers.get("Retry-After", "")
                self.sleep(float(wait) if wait.isdigit() else RETRY_BACKOFF.delay(attempt))
                continue
            if response.status_code not in ok:
                raise refusal(response, credential=self.credential, setting=self.setting)
            return response.json() if response.content else None
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
