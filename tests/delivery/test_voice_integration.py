"""Voice notices through delivery, the local voice sink playing the victim: the call reads the notice, the right PIN
acknowledges it, no PIN or a machine calls back on the pattern (an injected clock moves), a busy line at the next
repeat, and every webhook is signed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from devservers.sinks.voice import VoiceSinkConfig
from shared.events import ContactPointState, NotificationRequested, SubjectIdentifier, SubscriptionState
from shared.pin import hash_pin
from shared.settings import KafkaSettings
from shared.topics import SUBSCRIPTION_STATE
from shared.vocabulary import Channel, CustodyStatus, IdentifierKind, Language
from tests.delivery.harness import Delivery, MovableClock, eventually, running_delivery

pytestmark = pytest.mark.integration

PIN = "4821"


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
async def delivery(
    database_url: str, kafka_settings: KafkaSettings, pool: asyncpg.Pool, clock: MovableClock
) -> AsyncIterator[Delivery]:
    config = VoiceSinkConfig(ring_seconds=0.01, gather_wait_seconds=0.3)
    async with running_delivery(
        database_url=database_url, kafka=kafka_settings, pool=pool, voice_config=config, clock=clock
    ) as running:
        await running.publish_agency()
        yield running


async def voice_notice(
    delivery: Delivery, *, language: Language = Language.ENGLISH
) -> tuple[NotificationRequested, str]:
    """An urgent RELEASED notice to a fresh voice number whose subscriber chose ``PIN`` (state published first)."""
    request = delivery.request(channel=Channel.VOICE, status=CustodyStatus.RELEASED, language=language)
    state = SubscriptionState(
        subscription_id=request.subscription_id,
        agency_id=request.agency_id,
        identifier=SubjectIdentifier(kind=IdentifierKind.CASE_NUMBER, value="CR-2026-0042"),
        status="active",
        contacts=[
            ContactPointState(
                channel=Channel.VOICE,
                ciphertext=request.contact_ciphertext,
                masked=request.contact_masked,
                verified=True,
                active=True,
                pin_hash=hash_pin(delivery.settings.blind_index_key, request.subscription_id, PIN),
            )
        ],
        language=language,
        timezone="UTC",
        event_types=list(CustodyStatus),
        version=1,
        updated_at=datetime.now(UTC),
    )
    await delivery.publish_events(SUBSCRIPTION_STATE.name, [(state.subscription_id, state)])
    await eventually(
        lambda: delivery.pool.fetchval(
            "SELECT count(*) FROM subscription_states WHERE subscription_id = $1", request.subscription_id
        ),
        check=lambda count: count == 1,
        what="the subscription state stored",
    )
    return request, delivery.cipher.decrypt(request.contact_ciphertext)


async def press(delivery: Delivery, number: str, *digits: str) -> None:
    async with httpx.AsyncClient(base_url=delivery.voice_sink.url) as sink:
        assert (await sink.post("/sink/press", json={"number": number, "digits": list(digits)})).status_code == 204


async def ended_calls(delivery: Delivery, notification_id: str, count: int) -> list[dict[str, Any]]:
    """The notice's calls once ``count`` of them ended and delivery applied their final status callback."""

    async def probe() -> list[dict[str, Any]]:
        return delivery.calls_for(notification_id)

    def done(calls: list[dict[str, Any]]) -> bool:
        ended = [
            call for call in calls if call["end_time"] and any(c["status"] == call["status"] for c in call["callbacks"])
        ]
        return len(ended) >= count

    return await eventually(probe, check=done, timeout=20, what=f"{count} ended call(s)")


async def settled_schedule(delivery: Delivery, notification_id: str) -> datetime:
    """The next call's time once the last call's outcome was applied (no attempt in flight)."""
    found = await eventually(
        lambda: delivery.pool.fetchrow(
            "SELECT next_attempt_at, in_flight_attempt_id, status FROM notifications WHERE notification_id = $1",
            notification_id,
        ),
        check=lambda row: (
            row is not None and row["in_flight_attempt_id"] is None and row["next_attempt_at"] is not None
        ),
        what="the next call scheduled",
    )
    assert found is not None
    due: datetime = found["next_attempt_at"]
    return due


@pytest.mark.parametrize(
    ("language", "words"),
    [
        (Language.ENGLISH, ("John Example", "was RELEASED", "Example County Sheriff", "enter your 4-digit PIN")),
        (Language.SPANISH, ("John Example", "LIBERADO", "Example County Sheriff", "marque ahora su PIN")),
    ],
)
async def test_the_call_reads_the_notice_and_the_right_pin_acknowledges_it(
    delivery: Delivery, clock: MovableClock, language: Language, words: tuple[str, ...]
) -> None:
    request, number = await voice_notice(delivery, language=language)
    await press(delivery, number, PIN)
    published = datetime.now(UTC)
    await delivery.publish(request)
    [call] = await ended_calls(delivery, request.notification_id, 1)
    assert delivery.voice_sink.state.calls[call["sid"]].created_at - published < timedelta(seconds=2)
    for expected in words:
        assert expected in call["text"]
    assert call["pressed"] == [PIN]
    assert call["said"][-1]["text"].startswith(("Thank you. Your PIN is correct", "Gracias. Su PIN es correcto"))
    assert {entry["language"] for entry in call["said"]} == {"en-US" if language is Language.ENGLISH else "es-MX"}
    assert await delivery.outcome(request.notification_id) == "acknowledged"
    history = await delivery.history(request.notification_id)
    assert history["channel"] == "voice"
    assert [attempt["status"] for attempt in history["attempts"]] == ["delivered"]
    clock.advance(hours=3)
    await asyncio.sleep(1.0)
    assert len(delivery.calls_for(request.notification_id)) == 1  # acknowledged: no more calls


async def test_without_the_pin_it_calls_again_two_hours_after_the_answer(
    delivery: Delivery, clock: MovableClock
) -> None:
    request, number = await voice_notice(delivery)
    await press(delivery, number, "1111", "2222", "3333")  # three wrong PINs: asked again, then goodbye
    await delivery.publish(request)
    [first] = await ended_calls(delivery, request.notification_id, 1)
    assert first["pressed"] == ["1111", "2222", "3333"]
    assert first["text"].count("That PIN is not right") == 3
    assert await delivery.outcome(request.notification_id) is None
    due = await settled_schedule(delivery, request.notification_id)
    handed_off = await delivery.pool.fetchval(
        "SELECT handed_off_at FROM attempts WHERE notification_id = $1", request.notification_id
    )
    assert due - handed_off == timedelta(hours=2)
    clock.advance(minutes=90)
    await asyncio.sleep(1.0)
    assert len(delivery.calls_for(request.notification_id)) == 1  # not yet: 2 h after an unconfirmed answer
    await press(delivery, number, PIN)
    clock.advance(minutes=31)
    calls = await ended_calls(delivery, request.notification_id, 2)
    assert calls[-1]["pressed"] == [PIN]
    assert await delivery.outcome(request.notification_id) == "acknowledged"


async def test_a_machine_gets_the_message_and_the_call_repeats_every_two_hours(
    delivery: Delivery, clock: MovableClock
) -> None:
    request, number = await voice_notice(delivery)
    delivery.voice_sink.configure(answers={number: "machine"})
    await delivery.publish(request)
    [call] = await ended_calls(delivery, request.notification_id, 1)
    assert call["answered_by"] == "machine_end_beep"
    assert "was RELEASED" in call["text"]
    assert "We will call again until you confirm it with your PIN" in call["text"]
    assert "enter your 4-digit PIN" not in call["text"]
    due = await settled_schedule(delivery, request.notification_id)
    assert timedelta(hours=1, minutes=59) < due - clock() < timedelta(hours=2, minutes=1)
    history = await delivery.history(request.notification_id)
    assert "machine" in (history["attempts"][0]["detail"] or "")
    clock.advance(hours=2, minutes=1)
    await ended_calls(delivery, request.notification_id, 2)


async def test_a_busy_line_is_called_again_at_the_next_repeat_not_sooner(
    delivery: Delivery, clock: MovableClock
) -> None:
    request, number = await voice_notice(delivery)
    delivery.voice_sink.configure(answers={number: "busy"})
    await delivery.publish(request)
    await ended_calls(delivery, request.notification_id, 1)
    due = await settled_schedule(delivery, request.notification_id)
    assert timedelta(minutes=29) < due - clock() < timedelta(minutes=31)
    history = await delivery.history(request.notification_id)
    assert history["attempts"][0]["status"] == "temporary-failure"
    assert history["attempts"][0]["error_code"] == "busy"


async def test_voice_webhooks_refuse_a_bad_signature(delivery: Delivery) -> None:
    forged = {"CallSid": "CA" + "0" * 32, "CallStatus": "completed"}
    for path in ("/v1/callbacks/voice?ref=n-x.a1", "/v1/calls/n-x.a1/twiml", "/v1/calls/n-x.a1/pin?try=1"):
        answer = await delivery.http.post(path, data=forged, headers={"X-Twilio-Signature": "forged"})
        assert answer.status_code == 403, path


async def test_a_call_whose_status_callbacks_were_lost_is_settled_by_asking_twilio(delivery: Delivery) -> None:
    delivery.voice_sink.configure(callback_loss_rate=1.0)
    request = delivery.request(channel=Channel.VOICE, status=CustodyStatus.TRANSFERRED)  # informational: once
    await delivery.publish(request)
    await eventually(
        lambda: asyncio.sleep(0, delivery.calls_for(request.notification_id)),
        check=lambda calls: len(calls) == 1 and calls[0]["end_time"] is not None,
        what="the call placed and ended",
    )
    assert {callback["result"] for callback in delivery.calls_for(request.notification_id)[0]["callbacks"]} == {
        "dropped"
    }
    assert await eventually(
        lambda: delivery.outcome(request.notification_id), check=lambda outcome: outcome == "delivered", timeout=30
    )
    history = await delivery.history(request.notification_id)
    assert [attempt["status"] for attempt in history["attempts"]] == ["delivered"]
