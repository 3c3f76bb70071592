"""Stand-ins of the ingest and delivery admin APIs that ops calls, as ``httpx.MockTransport`` handlers.

They keep to the contracts (paths, bearer tokens, status codes, FastAPI's error shapes) and record every request, so
a test can check exactly what ops sent. ``down`` makes a service unreachable and ``time_out`` too slow; ``refuse_next``
makes its answer to the next write (not GET) an error of the test's choosing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pydantic import ValidationError

from services.ingest.agencies.schemas import ResourcesIn
from shared.vocabulary import CustodyStatus

INGEST_TOKEN = "test-ingest-admin-token"
DELIVERY_TOKEN = "test-delivery-operator-token"


@dataclass
class Sent:
    method: str
    path: str
    query: dict[str, str]
    body: Any


def problem(status: int, detail: Any) -> httpx.Response:
    return httpx.Response(status, json={"detail": detail})


def invalid(field_name: str, message: str) -> httpx.Response:
    """FastAPI's 422 shape."""
    return problem(422, [{"loc": ["body", field_name], "msg": message, "type": "value_error"}])


@dataclass
class StandIn:
    token: str
    down: bool = False
    time_out: bool = False
    refuse_next: httpx.Response | None = None
    requests: list[Sent] = field(default_factory=list)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if self.time_out:
            raise httpx.ReadTimeout("no answer", request=request)
        body = json.loads(request.content) if request.content else None
        self.requests.append(Sent(request.method, request.url.path, dict(request.url.params), body))
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return problem(401, "admin bearer token required")
        if self.refuse_next is not None and request.method != "GET":
            answer, self.refuse_next = self.refuse_next, None
            return answer
        return self.route(request.method, request.url.path, dict(request.url.params), body)

    def route(self, method: str, path: str, query: dict[str, str], body: Any) -> httpx.Response:
        raise NotImplementedError

    def sent(self, method: str, path_pattern: str) -> list[Sent]:
        return [r for r in self.requests if r.method == method and re.fullmatch(path_pattern, r.path)]


def storm_hold(hold_id: str, agency_id: str, *, held: int = 412, opened_at: datetime | None = None) -> dict[str, Any]:
    opened = opened_at or datetime.now(UTC) - timedelta(minutes=3)
    return {
        "hold_id": hold_id,
        "agency_id": agency_id,
        "state": "holding",
        "opened_at": opened.isoformat(),
        "trigger": f"{held} releases in 10 minutes: 41% of the 1000 people in custody (at most 10% expected)",
        "held_changes": held,
        "urgent_changes": held - 2,
        "by_status": {"released": held - 2, "in_custody": 2},
        "samples": [
            {
                "agency_record_id": f"rec-{index}",
                "status": "released",
                "previous_status": "in_custody",
                "effective_at": opened.isoformat(),
                "facility": "Main Jail",
                "display_name": f"SAMPLE, PERSON {index}",
            }
            for index in range(3)
        ],
        "decided_at": None,
        "decided_by": None,
        "decision_reason": None,
    }


@dataclass
class IngestStandIn(StandIn):
    token: str = INGEST_TOKEN
    agencies: dict[str, dict[str, Any]] = field(default_factory=dict)
    holds: dict[str, dict[str, Any]] = field(default_factory=dict)
    overrides: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    subjects: dict[tuple[str, str], tuple[str, datetime]] = field(default_factory=dict)

    def add_agency(self, agency_id: str, *, timezone: str = "America/Chicago") -> None:
        self.agencies[agency_id] = {
            "agency_id": agency_id,
            "name": f"Agency {agency_id}",
            "timezone": timezone,
            "notices_paused": False,
            "active": True,
            "expected_feed_interval_minutes": 60,
            "resources": {"contacts": [], "referrals": []},
        }

    def add_hold(self, hold: dict[str, Any]) -> None:
        self.holds[hold["hold_id"]] = hold

    def route(self, method: str, path: str, query: dict[str, str], body: Any) -> httpx.Response:  # noqa: PLR0911
        parts = path.strip("/").split("/")[2:]  # after v1/admin
        match method, parts:
            case "GET", ["feed-health"]:
                return httpx.Response(200, json=[])
            case "GET", ["agencies"]:
                return httpx.Response(200, json=list(self.agencies.values()))
            case "GET", ["agencies", agency_id]:
                if agency_id not in self.agencies:
                    return problem(404, f"no agency {agency_id!r}")
                return httpx.Response(200, json=self.agencies[agency_id])
            case "GET", ["storm-holds"]:
                return self.list_holds(query.get("state"))
            case "GET", ["storm-holds", hold_id]:
                if hold_id not in self.holds:
                    return problem(404, "no such storm hold")
                return httpx.Response(200, json=self.holds[hold_id])
            case "POST", ["storm-holds", hold_id, ("release" | "discard") as decision]:
                return self.decide(hold_id, decision, body)
            case "POST", ["agencies", agency_id, "overrides"]:
                return self.override(agency_id, body)
            case "PUT", ["agencies", agency_id, "resources"]:
                return self.replace_resources(agency_id, body)
            case "GET", ["agencies", agency_id, "overrides"]:
                if agency_id not in self.agencies:
                    return problem(404, f"no agency {agency_id!r}")
                return httpx.Response(200, json=list(reversed(self.overrides.get(agency_id, [])))[:100])
        return problem(404, "Not Found")

    def replace_resources(self, agency_id: str, body: Any) -> httpx.Response:
        """Checked by ingest's own request model, as ingest would."""
        if agency_id not in self.agencies:
            return problem(404, f"unknown agency {agency_id!r}")
        try:
            resources = ResourcesIn.model_validate(body)
        except ValidationError as error:
            return problem(422, error.errors(include_url=False, include_context=False))
        self.agencies[agency_id]["resources"] = resources.model_dump(mode="json")
        return httpx.Response(200, json=self.agencies[agency_id])

    def list_holds(self, state: str | None) -> httpx.Response:
        if state is not None and state not in {"holding", "released", "discarded"}:
            return problem(422, [{"loc": ["query", "state"], "msg": "Input should be 'holding', ...", "type": "enum"}])
        holds = [hold for hold in self.holds.values() if state is None or hold["state"] == state]
        holds.sort(key=lambda hold: hold["opened_at"], reverse=True)
        return httpx.Response(200, json=holds[:100])

    def decide(self, hold_id: str, decision: str, body: Any) -> httpx.Response:
        operator = body.get("operator") if isinstance(body, dict) else None
        if not isinstance(operator, str) or not 1 <= len(operator) <= 100:
            return invalid("operator", "String should have at least 1 character")
        reason = body.get("reason")
        if decision == "discard" and (not isinstance(reason, str) or not 1 <= len(reason) <= 500):
            return invalid("reason", "Field required")
        hold = self.holds.get(hold_id)
        if hold is None:
            return problem(404, "no such storm hold")
        if hold["state"] != "holding":
            return problem(409, f"storm hold {hold_id} was already {hold['state']}")
        hold |= {
            "state": "released" if decision == "release" else "discarded",
            "decided_at": datetime.now(UTC).isoformat(),
            "decided_by": operator,
            "decision_reason": reason if decision == "discard" else None,
        }
        return httpx.Response(200, json=hold)

    def override(self, agency_id: str, body: dict[str, Any]) -> httpx.Response:
        if agency_id not in self.agencies:
            return problem(404, f"no agency {agency_id!r}")
        identifiers = [body.get("person_number"), body.get("booking_number"), *body.get("case_numbers", [])]
        identifier = next((value for value in identifiers if value), None)
        if identifier is None:
            return problem(
                422, [{"loc": ["body"], "msg": "Value error, give at least one identifier", "type": "value_error"}]
            )
        if body.get("status") not in {status.value for status in CustodyStatus}:
            return invalid("status", "Input should be a canonical custody status")
        effective_at = datetime.fromisoformat(body["effective_at"])
        if effective_at.tzinfo is None:
            return invalid("effective_at", "Input should have timezone info")
        previous = self.subjects.get((agency_id, identifier))
        if previous is not None and effective_at < previous[1]:
            result = "stale"
        elif previous is not None and previous[0] == body["status"]:
            result = "duplicate"
        else:
            result = "accepted"
            self.subjects[(agency_id, identifier)] = (body["status"], effective_at)
        number = sum(len(items) for items in self.overrides.values()) + 1
        override = {
            "override_id": f"ovr-{number}",
            "agency_id": agency_id,
            "subject_id": f"subj-{identifier}",
            "result": result,
            "event_id": f"evt-{number}" if result == "accepted" else None,
            "status": body["status"],
            "effective_at": body["effective_at"],
            "operator": body["operator"],
            "reason": body["reason"],
            "created_at": datetime.now(UTC).isoformat(),
        }
        self.overrides.setdefault(agency_id, []).append(override)
        return httpx.Response(201, json=override)


def call_attempt(
    number: int,
    status: str,
    *,
    at: datetime,
    error_code: str | None = None,
    answered_by: str | None = None,
    minutes: float = 1.0,
) -> dict[str, Any]:
    """One call as delivery's history API lists it: placed at ``at``, over ``minutes`` later when it has ended."""
    ended = status in {"delivered", "temporary-failure", "technical-failure", "permanent-failure"}
    return {
        "attempt_id": f"att-{number}",
        "number": number,
        "purpose": "first" if number == 1 else "repeat",
        "channel": "voice",
        "contact": "+1•••••••67",
        "provider": "twilio-voice",
        "provider_message_id": f"CA{number:032d}",
        "status": status,
        "error_code": error_code,
        "detail": f"answered by {answered_by}" if answered_by else None,
        "created_at": at.isoformat(),
        "handed_off_at": at.isoformat(),
        "completed_at": (at + timedelta(minutes=minutes)).isoformat() if ended else None,
        "updated_at": (at + timedelta(minutes=minutes)).isoformat(),
    }


@dataclass
class DeliveryStandIn(StandIn):
    token: str = DELIVERY_TOKEN
    notices: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add_notice(
        self,
        notification_id: str,
        *,
        status: str = "created",
        outcome: str | None = None,
        channel: str = "sms",
        attempts: list[dict[str, Any]] | None = None,
        acknowledged_at: datetime | None = None,
    ) -> None:
        now = datetime.now(UTC).isoformat()
        self.notices[notification_id] = {
            "notification_id": notification_id,
            "kind": "status_change",
            "subscription_id": f"sub-{notification_id}",
            "agency_id": "county-jail",
            "channel": channel,
            "urgency": "urgent",
            "language": "en",
            "contact": "+1•••••••67",
            "case": None,
            "custody_event_id": "custody-event-1",
            "status": status,
            "outcome": outcome,
            "next_attempt_at": None if outcome else now,
            "attempt_count": len(attempts) if attempts else 1,
            "acknowledged_at": acknowledged_at.isoformat() if acknowledged_at else None,
            "parked_reason": None,
            "stop_reason": None,
            "created_at": now,
            "updated_at": now,
            "attempts": attempts or [],
        }

    def route(self, method: str, path: str, query: dict[str, str], body: Any) -> httpx.Response:
        match method, path.strip("/").split("/"):
            case "GET", ["v1", "notifications", notification_id]:
                if notification_id not in self.notices:
                    return problem(404, "no such notification")
                return httpx.Response(200, json=self.notices[notification_id])
            case "POST", ["v1", "notifications", notification_id, "stop"]:
                notice = self.notices.get(notification_id)
                if notice is None:
                    return problem(404, "no such notification")
                if notice["outcome"] is None:
                    notice |= {"outcome": "stopped", "next_attempt_at": None}
                return httpx.Response(200, json=notice)
        return problem(404, "Not Found")
