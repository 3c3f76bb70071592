"""The private manage link, one-click unsubscribe, bad input and rate limits."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from services.subscription.settings import SubscriptionSettings
from shared.events import ContactPointDisabled
from shared.topics import CONTACT_POINT_DISABLED
from shared.vocabulary import Channel
from tests.subscription.conftest import AGENCY_ID, Harness, contact, manage_token, started

pytestmark = pytest.mark.integration

PHONE = "+14155552671"
EMAIL = "victim.three@example.org"


async def test_manage_link_shows_changes_and_cancels(harness: Harness) -> None:
    created = await harness.subscribe(sms=PHONE, email=EMAIL)
    subscription_id = created["subscription_id"]
    url = f"/v1/manage/{manage_token(created)}"
    view = await harness.manage(created)
    assert view["subscription_id"] == subscription_id
    assert {c["masked"] for c in view["contacts"]} == {"+1••••••••71", "v•••@e•••.org"}

    changed = await harness.client.patch(
        url,
        json={
            "language": "es",
            "timezone": "America/Los_Angeles",
            "event_types": ["escaped", "released"],
            "quiet_hours": {"start": "22:00", "end": "06:30"},
        },
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["event_types"] == ["released", "escaped"]
    states = await harness.states(subscription_id, min_version=2)
    assert states[-1].language.value == "es"
    assert states[-1].timezone == "America/Los_Angeles"
    assert [e.value for e in states[-1].event_types] == ["released", "escaped"]
    assert states[-1].quiet_hours_start.hour == 22

    for body, status in (
        ({"timezone": "Mars/Olympus"}, 422),
        ({"event_types": []}, 422),
        ({"event_types": ["teleported"]}, 422),
        ({"language": "fr"}, 422),
        ({"sms": "+14155550000"}, 422),
    ):
        response = await harness.client.patch(url, json=body)
        assert response.status_code == status, (body, response.text)
    assert (await harness.manage(created))["timezone"] == "America/Los_Angeles"
    unchanged = await harness.client.patch(url, json={"language": "es"})
    assert unchanged.status_code == 200

    cancelled = await harness.client.delete(url)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert (await harness.client.delete(url)).json()["status"] == "cancelled"
    assert (await harness.client.patch(url, json={"language": "en"})).status_code == 409
    code = await harness.code(subscription_id, "sms")
    assert (await harness.verify(created, "sms", code)).status_code == 409
    states = await harness.states(subscription_id, min_version=3)
    assert [s.version for s in states] == [1, 2, 3], "no-op and refused changes publish nothing"
    assert states[-1].status == "cancelled"

    for forged in (manage_token(created)[:-2] + "xx", "abc", "a" * 600):
        response = await harness.client.get(f"/v1/manage/{forged}")
        assert response.status_code == 404
        assert response.json()["detail"] == "this manage link is not valid"


async def unsubscribe_path(harness: Harness, created: dict[str, Any]) -> str:
    states = await harness.states(created["subscription_id"], min_version=1)
    assert states[0].unsubscribe_url_ciphertext is not None
    url = harness.cipher.decrypt(states[0].unsubscribe_url_ciphertext)
    return url.removeprefix(harness.settings.public_base_url)


async def test_one_click_unsubscribe_ends_email_only(harness: Harness) -> None:
    both = await harness.subscribe(sms=PHONE, email=EMAIL)
    path = await unsubscribe_path(harness, both)
    page = await harness.client.get(path)
    assert page.status_code == 200
    assert 'name="List-Unsubscribe" value="One-Click"' in page.text
    assert contact(await harness.manage(both), "email")["active"] is True, "GET alone unsubscribes nothing"
    assert (await harness.client.post(path, data={"other": "x"})).status_code == 422
    response = await harness.client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    view = await harness.manage(both)
    assert contact(view, "email")["active"] is False
    assert contact(view, "sms")["active"] is True
    assert view["status"] == "pending"

    email_only = await harness.subscribe(email=EMAIL)
    response = await harness.client.post(
        await unsubscribe_path(harness, email_only),
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert (await harness.manage(email_only))["status"] == "cancelled"
    forged = await harness.client.post(path[:-3] + "abc", data={"List-Unsubscribe": "One-Click"})
    assert forged.status_code == 404


BAD_SUBSCRIPTIONS: list[tuple[dict[str, Any], int, str]] = [
    ({"agency_id": "nowhere-jail", "sms": PHONE}, 404, "unknown agency 'nowhere-jail': check the agency id"),
    ({"agency_id": "closed-jail", "sms": PHONE}, 409, "Closed Jail does not take subscriptions at the moment"),
    ({"sms": "+1 555 123 4567"}, 422, "this phone number is not valid; check the digits and the country code"),
    ({"sms": "+44 20 7946 0018"}, 422, "this number cannot receive text messages; enter a mobile number"),
    ({"sms": "+1 800 555 1234"}, 422, "this number cannot receive text messages; enter a mobile number"),
    ({"sms": "call me"}, 422, "this is not a phone number we can read; include the country code, e.g. +1"),
    ({"email": "not-an-email"}, 422, "this email address is not valid"),
    ({"sms": PHONE, "email": "a@b"}, 422, "this email address is not valid"),
    ({}, 422, "give a mobile number (sms), an email address, or both"),
    ({"sms": PHONE, "timezone": "Central"}, 422, "unknown time zone 'Central'"),
    ({"sms": PHONE, "event_types": []}, 422, "choose at least one kind of event"),
]


async def test_bad_input_gets_a_specific_4xx_and_creates_nothing(harness: Harness) -> None:
    await harness.add_agency("closed-jail", active=False, name="Closed Jail")
    base = {
        "agency_id": AGENCY_ID,
        "identifier": {"kind": "case_number", "value": "CR-1"},
        "timezone": "America/Chicago",
    }
    for fields, status, detail in BAD_SUBSCRIPTIONS:
        response = await harness.client.post("/v1/subscriptions", json={**base, **fields})
        assert response.status_code == status, (fields, response.text)
        assert response.json()["detail"].startswith(detail), (fields, response.json())
    for body in (
        {**base, "sms": PHONE, "language": "de"},
        {**base, "sms": PHONE, "identifier": {"kind": "ssn", "value": "1"}},
        {**base, "sms": PHONE, "identifier": {"kind": "case_number", "value": ""}},
        {**base, "sms": PHONE, "agency_id": "../etc"},
        {**base, "sms": PHONE, "unexpected": True},
        {**base, "sms": PHONE * 10},
    ):
        assert (await harness.client.post("/v1/subscriptions", json=body)).status_code == 422, body
    assert (await harness.client.post("/v1/subscriptions", content=b"{not json")).status_code == 422
    assert await harness.pool.fetchval("SELECT count(*) FROM subscriptions") == 0
    assert await harness.pool.fetchval("SELECT count(*) FROM outbox") == 0


async def test_rate_limits_per_client_and_per_contact(
    subscription_settings: SubscriptionSettings, pool: asyncpg.Pool
) -> None:
    settings = subscription_settings.model_copy(
        update={
            "trusted_proxies": ["127.0.0.1"],  # the test client's address: our ingress
            "subscribe_limit_per_client_per_hour": 3,
            "subscribe_limit_per_contact_per_day": 2,
        }
    )
    async with started(settings, pool) as harness:
        body = {
            "agency_id": AGENCY_ID,
            "identifier": {"kind": "case_number", "value": "CR-1"},
            "timezone": "America/Chicago",
        }

        async def subscribe(ip: str, **fields: Any) -> int:
            response = await harness.client.post(
                "/v1/subscriptions", json={**body, **fields}, headers={"X-Forwarded-For": f"198.51.100.7, {ip}"}
            )
            if response.status_code == 429:
                assert int(response.headers["Retry-After"]) >= 1
            return response.status_code

        assert [await subscribe("203.0.113.1", sms=PHONE) for _ in range(2)] == [201, 201]
        assert await subscribe("203.0.113.1", sms="+12025550143") == 201
        assert await subscribe("203.0.113.1", sms="+13125550199") == 429, "4th from one client in an hour"
        assert await subscribe("203.0.113.2", sms="415-555-2671") == 429, "3rd for one number, any format"
        assert await subscribe("203.0.113.2", email=EMAIL) == 201
        assert await subscribe("203.0.113.3", sms="+13125550199") == 201
        buckets = await pool.fetch("SELECT bucket FROM rate_limit_windows")
        assert all("203.0.113" not in row["bucket"] for row in buckets), "client addresses are stored hashed"

    # From a peer that is not our proxy X-Forwarded-For is ignored: a new one each time buys no more tries.
    async with started(settings.model_copy(update={"trusted_proxies": []}), pool) as direct:
        statuses = [
            (
                await direct.client.post(
                    "/v1/subscriptions",
                    json={**body, "email": f"victim-{n}@example.org"},
                    headers={"X-Forwarded-For": f"192.0.2.{n}"},
                )
            ).status_code
            for n in range(1, 5)
        ]
    assert statuses == [201, 201, 201, 429]


async def test_contact_disabled_by_delivery_is_applied_once(harness: Harness) -> None:
    created = await harness.subscribe(sms=PHONE, email=EMAIL)
    event = await harness.publish(
        CONTACT_POINT_DISABLED.name,
        created["subscription_id"],
        ContactPointDisabled(
            subscription_id=created["subscription_id"],
            channel=Channel.EMAIL,
            reason="hard_bounce",
            at=datetime.now(UTC),
        ),
    )
    await harness.wait_for(
        "SELECT true FROM contact_points WHERE subscription_id = $1 AND channel = 'email' AND NOT active",
        created["subscription_id"],
        what="contact disabled",
    )
    states = await harness.states(created["subscription_id"], min_version=2)
    assert {c.channel.value: c.active for c in states[-1].contacts} == {"sms": True, "email": False}
    # The same event again (Kafka is at-least-once), then one for an unknown subscription on the same key (so the
    # same partition, after it): once that one is processed, the replay was too. Neither has an effect or an error.
    await harness.publish(CONTACT_POINT_DISABLED.name, created["subscription_id"], event.data, event_id=event.id)
    marker = await harness.publish(
        CONTACT_POINT_DISABLED.name,
        created["subscription_id"],
        ContactPointDisabled(subscription_id="unknown", channel=Channel.SMS, reason="opted_out", at=datetime.now(UTC)),
    )
    await harness.wait_for(
        "SELECT true FROM processed_events WHERE event_id = $1", marker.id, what="the marker event consumed"
    )
    states = await harness.states(created["subscription_id"], min_version=2)
    assert max(s.version for s in states) == 2
