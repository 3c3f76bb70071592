"""Inbound SMS: STOP ends exactly that number's texts, START resumes, HELP answers, forged webhooks are refused."""

from __future__ import annotations

from typing import Any

import pytest

from shared.envelope import decode
from shared.events import NoticeAcknowledged
from shared.topics import NOTIFICATION_ACKNOWLEDGED
from tests.kafkautil import read_exactly
from tests.subscription.conftest import PUBLIC_BASE_URL, Harness, contact

pytestmark = pytest.mark.integration

PHONE = "+14155552671"
OTHER_PHONE = "+12025550143"
EMAIL = "victim.two@example.org"


async def verified(harness: Harness, **fields: Any) -> dict[str, Any]:
    created = await harness.subscribe(**fields)
    for channel in ("sms", "email"):
        if fields.get(channel):
            code = await harness.code(created["subscription_id"], channel)
            response = await harness.verify(created, channel, code)
            assert response.status_code == 200, response.text
    return created


async def test_stop_ends_exactly_that_numbers_sms_and_start_resumes(harness: Harness) -> None:
    both = await verified(harness, sms=PHONE, email=EMAIL)
    same_number = await verified(harness, sms="415 555 2671", identifier={"kind": "booking_number", "value": "B-9"})
    other_number = await verified(harness, sms=OTHER_PHONE)

    response = await harness.inbound_sms(PHONE, " Stop ", "SM-stop-1")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    assert "<Message>" in response.text
    assert "START" in response.text

    view = await harness.manage(both)
    assert contact(view, "sms")["active"] is False
    assert contact(view, "email")["active"] is True, "the same subscription's email keeps going"
    assert view["status"] == "active"
    assert contact(await harness.manage(same_number), "sms")["active"] is False
    assert contact(await harness.manage(other_number), "sms")["active"] is True, "another number keeps SMS"

    states = await harness.states(both["subscription_id"], min_version=4)
    latest = states[-1]
    assert latest.version == 4
    assert {c.channel.value: c.active for c in latest.contacts} == {"sms": False, "email": True}
    other_states = await harness.states(other_number["subscription_id"], min_version=2)
    assert max(s.version for s in other_states) == 2, "no new state for a number that did not write"

    response = await harness.inbound_sms(PHONE, "START", "SM-start-1")
    assert response.status_code == 200
    assert "resumed" in response.text
    assert contact(await harness.manage(both), "sms")["active"] is True
    assert contact(await harness.manage(same_number), "sms")["active"] is True
    states = await harness.states(both["subscription_id"], min_version=5)
    assert {c.channel.value: c.active for c in states[-1].contacts} == {"sms": True, "email": True}


@pytest.mark.parametrize("word", ["STOPALL", "unsubscribe", "Cancel", "END", "quit."])
async def test_every_stop_word_stops(harness: Harness, word: str) -> None:
    created = await harness.subscribe(sms=PHONE)
    assert (await harness.inbound_sms(PHONE, word, f"SM-{word}")).status_code == 200
    assert contact(await harness.manage(created), "sms")["active"] is False


async def test_forged_or_replayed_webhooks_change_nothing(harness: Harness) -> None:
    created = await harness.subscribe(sms=PHONE)
    forged = await harness.inbound_sms(PHONE, "STOP", "SM-1", signature="bm90IGEgc2lnbmF0dXJl")
    assert forged.status_code == 403
    assert forged.json()["detail"] == "invalid Twilio signature"
    other_url = await harness.inbound_sms(PHONE, "STOP", "SM-2", url=f"{PUBLIC_BASE_URL}/elsewhere")
    assert other_url.status_code == 403
    unsigned = await harness.client.post("/v1/sms/inbound", data={"From": PHONE, "Body": "STOP", "MessageSid": "SM-3"})
    assert unsigned.status_code == 403
    assert contact(await harness.manage(created), "sms")["active"] is True

    assert (await harness.inbound_sms(PHONE, "STOP", "SM-4")).status_code == 200
    assert (await harness.inbound_sms(PHONE, "START", "SM-5")).status_code == 200
    replay = await harness.inbound_sms(PHONE, "STOP", "SM-4")
    assert replay.status_code == 409
    assert contact(await harness.manage(created), "sms")["active"] is True, "the replayed STOP had no effect"


async def test_help_answers_the_same_for_any_number(harness: Harness) -> None:
    await harness.subscribe(sms=PHONE, language="es")
    known = await harness.inbound_sms(PHONE, "help", "SM-h1")
    unknown = await harness.inbound_sms("+13125550199", "HELP", "SM-h2")
    assert known.status_code == unknown.status_code == 200
    assert "STOP" in known.text
    assert "Custody Watch" in known.text
    assert "Responda STOP" in known.text, "the reply is in the subscriber's language"
    assert "Reply STOP" in unknown.text
    nonsense = await harness.inbound_sms("not a number", "STOP", "SM-h3")
    assert nonsense.status_code == 200


async def test_acknowledgement_reply_stops_repeats_for_that_numbers_subscriptions(harness: Harness) -> None:
    first = await verified(harness, sms=PHONE)
    second = await verified(harness, sms=PHONE, identifier={"kind": "person_number", "value": "A-123"})
    other = await verified(harness, sms=OTHER_PHONE)
    response = await harness.inbound_sms(PHONE, "OK", "SM-ack")
    assert response.status_code == 200
    records = await read_exactly(harness.kafka, harness.kafka.topic(NOTIFICATION_ACKNOWLEDGED.name), 2)
    assert len(records) == 2
    acks = [decode(r.value).data for r in records]
    assert all(isinstance(a, NoticeAcknowledged) for a in acks)
    assert {a.subscription_id for a in acks if isinstance(a, NoticeAcknowledged)} == {
        first["subscription_id"],
        second["subscription_id"],
    }
    assert other["subscription_id"] not in {r.key.decode() for r in records if r.key}
