"""Subscribe, verify by code or link, resend, and the events that tell matching and delivery about it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.subscription.settings import SubscriptionSettings
from shared.events import NotificationKind
from shared.vocabulary import CustodyStatus, Urgency
from tests.subscription.conftest import Harness, contact, manage_token, started

pytestmark = pytest.mark.integration

PHONE = "+14155552671"
EMAIL = "victim.one@example.org"


async def test_subscribe_then_verify_sms_publishes_each_state(harness: Harness) -> None:
    created = await harness.subscribe(sms="(415) 555-2671", email=EMAIL, language="es")
    assert created["status"] == "pending"
    assert created["event_types"] == [status.value for status in CustodyStatus]
    assert {c["channel"]: (c["masked"], c["verified"]) for c in created["contacts"]} == {
        "sms": ("+1••••••••71", False),
        "email": ("v•••@e•••.org", False),
    }
    assert PHONE not in str(created)
    assert EMAIL not in str(created)
    subscription_id = created["subscription_id"]

    sms_notice = (await harness.notices(subscription_id, "sms"))[0]
    assert sms_notice.kind is NotificationKind.VERIFICATION
    assert sms_notice.urgency is Urgency.URGENT, "a verification code must not wait for quiet hours"
    assert harness.cipher.decrypt(sms_notice.contact_ciphertext) == PHONE
    assert sms_notice.contact_masked == "+1••••••••71"
    assert sms_notice.language.value == "es"
    email_notice = (await harness.notices(subscription_id, "email"))[0]
    assert email_notice.verify_url_ciphertext is not None
    assert harness.cipher.decrypt(email_notice.verify_url_ciphertext).startswith(
        f"{harness.settings.public_base_url}/v1/verify?token="
    )
    assert harness.cipher.decrypt(email_notice.contact_ciphertext) == EMAIL

    code = await harness.code(subscription_id, "sms")
    response = await harness.verify(created, "sms", code)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "active"
    assert contact(response.json(), "sms")["verified"] is True
    assert contact(response.json(), "email")["verified"] is False

    states = await harness.states(subscription_id, min_version=2)
    assert [s.version for s in states] == [1, 2]
    assert [s.status for s in states] == ["pending", "active"]
    latest = states[-1]
    sms_state = next(c for c in latest.contacts if c.channel.value == "sms")
    assert sms_state.verified
    assert sms_state.active
    assert harness.cipher.decrypt(sms_state.ciphertext) == PHONE
    assert latest.manage_url_ciphertext is not None
    assert harness.cipher.decrypt(latest.manage_url_ciphertext) == created["manage_url"]
    assert latest.unsubscribe_url_ciphertext is not None

    again = await harness.verify(created, "sms", code)
    assert again.status_code == 409, "a used code cannot verify again"


async def test_code_cannot_be_brute_forced_within_the_attempt_limit(harness: Harness) -> None:
    created = await harness.subscribe(sms=PHONE)
    subscription_id = created["subscription_id"]
    real = await harness.code(subscription_id, "sms")
    wrong = [f"{(int(real) + n) % 1_000_000:06d}" for n in range(1, 6)]
    answers = [await harness.verify(created, "sms", guess) for guess in wrong]
    assert [a.status_code for a in answers] == [422, 422, 422, 422, 429]
    assert answers[0].json()["detail"] == "wrong code: 4 attempts left"
    assert "request a new code" in answers[-1].json()["detail"]
    # Even the right code is refused now: the attempts of this code are used up.
    blocked = await harness.verify(created, "sms", real)
    assert blocked.status_code == 429
    assert "new code" in blocked.json()["detail"]
    view = await harness.manage(created)
    assert view["status"] == "pending"
    assert contact(view, "sms")["verified"] is False
    attempts = await harness.pool.fetchval(
        "SELECT attempts FROM verification_codes WHERE subscription_id = $1", subscription_id
    )
    assert attempts == 5
    states = await harness.states(subscription_id, min_version=1)
    assert [s.version for s in states] == [1], "failed attempts change nothing of the subscription"


async def test_a_new_code_after_exhaustion_works_but_resends_are_throttled(
    subscription_settings: SubscriptionSettings, pool: asyncpg.Pool
) -> None:
    settings = subscription_settings.model_copy(update={"resend_min_interval_seconds": 0, "resend_max_per_hour": 3})
    async with started(settings, pool) as harness:
        created = await harness.subscribe(sms=PHONE)
        subscription_id = created["subscription_id"]
        first = await harness.code(subscription_id, "sms")
        for _ in range(5):
            await harness.verify(created, "sms", f"{(int(first) + 1) % 1_000_000:06d}")
        resend = f"/v1/subscriptions/{subscription_id}/resend"
        auth = {"Authorization": f"Bearer {manage_token(created)}"}
        assert (await harness.client.post(resend, json={"channel": "sms"}, headers=auth)).status_code == 202
        second = await harness.code(subscription_id, "sms", issue=2)
        notices = await harness.notices(subscription_id, "sms", 2)
        assert len({n.notification_id for n in notices}) == 2
        assert (await harness.client.post(resend, json={"channel": "sms"}, headers=auth)).status_code == 202
        third = await harness.code(subscription_id, "sms", issue=3)
        throttled = await harness.client.post(resend, json={"channel": "sms"}, headers=auth)
        assert throttled.status_code == 429
        assert int(throttled.headers["Retry-After"]) > 3000
        if second != third:
            assert (await harness.verify(created, "sms", second)).status_code == 422, "only the newest code counts"
        response = await harness.verify(created, "sms", third)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "active"


async def test_resend_waits_a_minute_between_codes(harness: Harness) -> None:
    created = await harness.subscribe(email=EMAIL)
    response = await harness.client.post(
        f"/v1/subscriptions/{created['subscription_id']}/resend",
        json={"channel": "email"},
        headers={"Authorization": f"Bearer {manage_token(created)}"},
    )
    assert response.status_code == 429
    assert 55 <= int(response.headers["Retry-After"]) <= 60
    assert "new one in" in response.json()["detail"]


async def test_expired_code_is_refused(harness: Harness) -> None:
    created = await harness.subscribe(sms=PHONE)
    code = await harness.code(created["subscription_id"], "sms")
    await harness.pool.execute(
        "UPDATE verification_codes SET expires_at = $2 WHERE subscription_id = $1",
        created["subscription_id"],
        datetime.now(UTC) - timedelta(seconds=1),
    )
    response = await harness.verify(created, "sms", code)
    assert response.status_code == 410
    assert response.json()["detail"] == "this code has expired: request a new code"


async def test_verify_needs_the_manage_token_of_that_subscription(harness: Harness) -> None:
    mine = await harness.subscribe(sms=PHONE)
    other = await harness.subscribe(email=EMAIL)
    code = await harness.code(mine["subscription_id"], "sms")
    no_token = await harness.client.post(
        f"/v1/subscriptions/{mine['subscription_id']}/verify", json={"channel": "sms", "code": code}
    )
    assert no_token.status_code == 401
    wrong_token = await harness.verify(mine, "sms", code, token=manage_token(other))
    assert wrong_token.status_code == 403
    forged = await harness.verify(mine, "sms", code, token=manage_token(mine)[:-3] + "abc")
    assert forged.status_code == 403
    not_a_code = await harness.verify(mine, "sms", "12ab56")
    assert not_a_code.status_code == 422
    assert not_a_code.json()["detail"] == "the code has 6 digits"
    missing_channel = await harness.verify(mine, "email", "123456")
    assert missing_channel.status_code == 404
    assert missing_channel.json()["detail"] == "this subscription has no email contact"
    # None of these counted against the real code, and it still works.
    assert (await harness.verify(mine, "sms", code)).status_code == 200


async def test_email_link_page_changes_nothing_and_its_post_verifies_once(harness: Harness) -> None:
    created = await harness.subscribe(email=EMAIL)
    notice = (await harness.notices(created["subscription_id"], "email"))[0]
    assert notice.verify_url_ciphertext is not None
    link = harness.cipher.decrypt(notice.verify_url_ciphertext)
    path = link.removeprefix(harness.settings.public_base_url)
    token = path.split("token=", 1)[1]
    page = await harness.client.get(path, headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert 'method="post"' in page.text
    assert contact(await harness.manage(created), "email")["verified"] is False, "a prefetched link verifies nothing"
    response = await harness.client.post("/v1/verify", json={"token": token})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "active"
    assert contact(response.json(), "email")["verified"] is True
    replay = await harness.client.post("/v1/verify", json={"token": token})
    assert replay.status_code == 409
    forged = await harness.client.post("/v1/verify", json={"token": token[:-4] + "AAAA"})
    assert forged.status_code == 404
    assert (await harness.client.post("/v1/verify", json={"token": "nonsense"})).status_code == 404
    assert (await harness.client.post("/v1/verify", json={})).status_code == 422
    not_utf8 = await harness.client.post("/v1/verify", content=b"\xff", headers={"Content-Type": "application/json"})
    assert not_utf8.status_code == 422
    assert not_utf8.json()["detail"][0]["loc"] == ["body"]
