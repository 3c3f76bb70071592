"""The channel plug-in point: every channel of the vocabulary has its module, and each says its own rules."""

from __future__ import annotations

import asyncpg
import pytest

from services.delivery.channels.email import EmailChannel
from services.delivery.channels.registry import build_channels
from services.delivery.channels.sms import SmsChannel
from services.delivery.channels.voice import VoiceChannel
from services.delivery.providers.base import CallbackError, ProviderReceipt
from services.delivery.rendering import NoticeRenderer
from services.delivery.settings import DeliverySettings
from shared.events import DeliveryStatus
from shared.vocabulary import Channel


def unstarted_pool() -> asyncpg.Pool:
    raise AssertionError("no send slot is taken in these tests")


async def test_every_channel_has_a_module_that_names_it() -> None:
    channels = build_channels(DeliverySettings(environment="test"), unstarted_pool, NoticeRenderer())
    assert set(channels) == set(Channel)
    assert all(channels[channel].channel is channel for channel in Channel)
    assert set(channels.reconciling()) == {Channel.SMS, Channel.VOICE}  # SMTP cannot be asked
    assert channels.of_type(VoiceChannel) is channels[Channel.VOICE]
    await channels.close()


async def test_each_channel_reads_its_own_receipts_and_signers() -> None:
    settings = DeliverySettings(environment="test")
    channels = build_channels(settings, unstarted_pool, NoticeRenderer())
    sms, voice = channels.of_type(SmsChannel), channels.of_type(VoiceChannel)
    email = channels.of_type(EmailChannel)

    report = sms.read_callback({"MessageSid": "SM1", "MessageStatus": "undelivered", "ErrorCode": "21610"})
    assert (report.receipt.status, report.receipt.disable) == (DeliveryStatus.PERMANENT_FAILURE, "opted_out")
    with pytest.raises(CallbackError):
        sms.read_callback({"MessageStatus": "delivered"})
    call = voice.read_callback({"CallSid": "CA1", "CallStatus": "completed", "AnsweredBy": "machine_start"})
    assert (call.receipt.status, call.receipt.unconfirmed, call.detail) == (
        DeliveryStatus.DELIVERED,
        True,
        "answered by machine_start",
    )
    with pytest.raises(CallbackError):
        email.read_callback({})

    provider = settings.sms_providers[0].name
    assert sms.callback_signers(provider) is not None
    assert sms.callback_signers("nobody") is None
    assert voice.callback_signers(None) is voice.signers
    assert email.callback_signers(None) is None

    assert sms.handoff_receipt(ProviderReceipt(provider, "SM1", "queued")) is None
    delivered = sms.handoff_receipt(ProviderReceipt(provider, "SM1", "delivered"))
    assert delivered is not None
    assert delivered.status is DeliveryStatus.DELIVERED
    assert email.handoff_is_verdict
    assert not sms.handoff_is_verdict
    assert email.resend_detail is not None
    assert sms.resend_detail is None
    assert email.normalise_contact(" Victim@Example.ORG ") == "victim@example.org"
    assert email.failure_receipt("5.1.1", permanent=True).disable == "hard_bounce"
    assert voice.failure_receipt("21215", permanent=False).status is DeliveryStatus.TEMPORARY_FAILURE
    await channels.close()
