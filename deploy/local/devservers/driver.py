"""Drives the running system through its public APIs only: the agency feed, the victim's subscription API,
the SMS webhook, and what the local SMS/email sinks received. Used by the end-to-end tests, ``make demo`` and
the benchmark."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from devservers.stack import Stack
from shared.logging import redact
from shared.twilio import twilio_signature

CODE = re.compile(r"\b(\d{6})\b")
NO_STORM_HOLD: dict[str, Any] = {"storm_min_changes": 1_000_000}
"""Agency settings for load and fault runs, which push thousands of releases in minutes on purpose."""


class DriverError(RuntimeError):
    """The system did not answer as a user would expect."""


@dataclass
class Victim:
    subscription_id: str
    manage_token: str
    sms: str | None
    email: str | None


class SystemDriver:
    def __init__(self, stack: Stack, client: httpx.AsyncClient) -> None:
        self.stack = stack
        self.http = client

    async def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A call to ingest's admin API (``path`` from ``/v1/admin``) with the admin token."""
        headers = {"Authorization": f"Bearer {self.stack.secrets['ADMIN_TOKEN']}"}
        return await self.http.request(method, f"{self.stack.url('ingest')}/v1/admin{path}", headers=headers, **kwargs)

    async def create_agency(self, agency_id: str, **fields: Any) -> str:
        """Create an agency (admin API) and return a fresh feed API key for it."""
        body = {"agency_id": agency_id, "name": f"{agency_id} jail", "timezone": "America/Chicago", **fields}
        answer = await self.admin("POST", "/agencies", json=body)
        if answer.status_code not in (201, 409):
            raise DriverError(f"creating agency {agency_id}: {answer.status_code} {answer.text}")
        key = await self.admin("POST", f"/agencies/{agency_id}/keys", json={"label": "e2e"})
        if key.status_code != 201:
            raise DriverError(f"creating a key for {agency_id}: {key.status_code} {key.text}")
        return str(key.json()["api_key"])

    async def push(self, agency_id: str, api_key: str, records: list[dict[str, Any]]) -> dict[str, Any]:
        answer = await self.http.post(
            f"{self.stack.url('ingest')}/v1/agencies/{agency_id}/custody-events",
            json={"records": records},
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=120,
        )
        if answer.status_code != 200:
            raise DriverError(f"pushing a feed: {answer.status_code} {answer.text}")
        result: dict[str, Any] = answer.json()
        return result

    async def subscribe(
        self,
        agency_id: str,
        case: str,
        *,
        sms: str | None = None,
        email: str | None = None,
        language: str = "en",
        timezone: str = "America/Chicago",
        quiet_hours: bool = False,
    ) -> Victim:
        """Subscribe (quiet hours off unless asked for, so a notice never waits for the morning of a test run)."""
        body: dict[str, Any] = {
            "agency_id": agency_id,
            "identifier": {"kind": "case_number", "value": case},
            "language": language,
            "timezone": timezone,
        }
        if not quiet_hours:
            body["quiet_hours"] = {"start": "00:00", "end": "00:00"}
        if sms:
            body["sms"] = sms
        if email:
            body["email"] = email
        deadline = time.monotonic() + 60
        while True:
            answer = await self.http.post(f"{self.stack.url('subscription')}/v1/subscriptions", json=body)
            # A new agency reaches the subscription service through Kafka a moment after it is created.
            if answer.status_code != 404 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        if answer.status_code != 201:
            raise DriverError(f"subscribing: {answer.status_code} {redact(answer.text[:300])}")
        created = answer.json()
        return Victim(created["subscription_id"], created["manage_url"].rstrip("/").rsplit("/", 1)[-1], sms, email)

    async def verify(self, victim: Victim, channel: str) -> None:
        """Read the code from what the sink received, as the victim would, and enter it."""
        address = victim.sms if channel == "sms" else victim.email
        if address is None:
            raise DriverError(f"this victim has no {channel} contact")

        def code_in(messages: list[dict[str, Any]]) -> str | None:
            for message in messages:
                text = message.get("body") or message.get("text") or ""
                found = CODE.search(text)
                if found:
                    return found.group(1)
            return None

        messages = await self.wait_for(channel, address, lambda found: code_in(found) is not None)
        code = code_in(messages)
        answer = await self.http.post(
            f"{self.stack.url('subscription')}/v1/subscriptions/{victim.subscription_id}/verify",
            json={"channel": channel, "code": code},
            headers={"Authorization": f"Bearer {victim.manage_token}"},
        )
        if answer.status_code != 200:
            raise DriverError(f"verifying: {answer.status_code} {answer.text}")

    async def wait_for_matching(self, agency_id: str, *, reachable_contacts: int, within: float = 30.0) -> None:
        """Wait until matching's view of the agency's subscriptions (built from Kafka) has caught up: it holds
        exactly ``reachable_contacts`` verified, not-stopped contact points."""
        deadline = time.monotonic() + within
        while True:
            answer = await self.http.get(
                f"{self.stack.url('matching')}/v1/matching/stats",
                params={"agency_id": agency_id},
                headers={"Authorization": f"Bearer {self.stack.secrets['OPERATOR_TOKEN']}"},
            )
            answer.raise_for_status()
            if answer.json()["reachable_contacts"] == reachable_contacts:
                return
            if time.monotonic() > deadline:
                raise DriverError(f"matching holds {answer.json()['reachable_contacts']} reachable contacts")
            await asyncio.sleep(0.2)

    async def reply_sms(self, sender: str, text: str) -> httpx.Response:
        """An inbound SMS as Twilio would post it, signed with the account's auth token."""
        url = f"{self.stack.url('subscription')}/v1/sms/inbound"
        form = {"From": sender, "To": "+15005550006", "Body": text, "MessageSid": f"SM{time.time_ns()}"}
        signature = twilio_signature(self.stack.secrets["SMS_AUTH_TOKEN"], url, form)
        return await self.http.post(url, data=form, headers={"X-Twilio-Signature": signature})

    async def received(self, channel: str, address: str) -> list[dict[str, Any]]:
        path = (
            f"{self.stack.url('sms_sink')}/sink/messages"
            if channel == "sms"
            else (f"{self.stack.url('email_sink')}/sink/emails")
        )
        answer = await self.http.get(path, params={"to": address})
        answer.raise_for_status()
        messages: list[dict[str, Any]] = answer.json()
        return messages

    async def wait_for(
        self,
        channel: str,
        address: str,
        condition: Callable[[list[dict[str, Any]]], bool],
        within: float = 60.0,
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + within
        while True:
            messages = await self.received(channel, address)
            if condition(messages):
                return messages
            if time.monotonic() > deadline:
                raise DriverError(f"timed out waiting for {channel} messages; have {len(messages)}")
            await asyncio.sleep(0.25)


def custody_record(record_id: str, case: str, status_code: str, **fields: Any) -> dict[str, Any]:
    return {
        "record_id": record_id,
        "person_number": f"P-{case}",
        "booking_number": f"B-{case}",
        "case_numbers": [case],
        "name": "Test Person",
        "facility": "Main Jail",
        "status_code": status_code,
        "effective_at": datetime.now(UTC).isoformat(),
        **fields,
    }
