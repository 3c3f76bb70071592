"""Which module serves which channel: adding a channel is one line here (and its vocabulary, migration, module)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import asyncpg

from services.delivery.channels.base import DeliveryChannel
from services.delivery.channels.email import EmailChannel
from services.delivery.channels.sms import SmsChannel
from services.delivery.channels.voice import VoiceChannel
from services.delivery.rendering import NoticeRenderer
from services.delivery.settings import DeliverySettings
from shared.vocabulary import Channel

AnyChannel = DeliveryChannel[Any]


class Channels(Mapping[Channel, AnyChannel]):
    """Every channel by its :class:`Channel`; ``email`` and ``voice`` also serve their own webhooks (bounces, the
    TwiML and PIN of a call), which need them by type."""

    def __init__(self, *, sms: SmsChannel, email: EmailChannel, voice: VoiceChannel) -> None:
        self.email = email
        self.voice = voice
        self._by_channel: dict[Channel, AnyChannel] = {channel.channel: channel for channel in (sms, email, voice)}

    def __getitem__(self, key: Channel) -> AnyChannel:
        return self._by_channel[key]

    def __iter__(self) -> Iterator[Channel]:
        return iter(self._by_channel)

    def __len__(self) -> int:
        return len(self._by_channel)

    def reconciling(self) -> list[Channel]:
        """The channels whose providers can be asked about a lost status callback."""
        return [key for key, channel in self._by_channel.items() if channel.reconciles_receipts]

    async def close(self) -> None:
        for channel in self._by_channel.values():
            await channel.close()


def build_channels(settings: DeliverySettings, pool: Callable[[], asyncpg.Pool], renderer: NoticeRenderer) -> Channels:
    """Every channel with its providers from settings; ``pool`` is called once the service has started."""
    return Channels(
        sms=SmsChannel.from_settings(settings, pool, renderer),
        email=EmailChannel.from_settings(settings, pool, renderer),
        voice=VoiceChannel.from_settings(settings, pool, renderer),
    )
