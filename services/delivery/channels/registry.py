"""Which module serves which channel: adding a channel is one line here (and its vocabulary, migration, module)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import asyncpg

from services.delivery.channels.base import DeliveryChannel
from services.delivery.channels.email import EmailChannel
from services.delivery.channels.sms import SmsChannel
from services.delivery.channels.voice import VoiceChannel
from services.delivery.rendering import NoticeRenderer
from services.delivery.settings import DeliverySettings
from shared.vocabulary import Channel

AnyChannel = DeliveryChannel[Any]
C = TypeVar("C", bound=AnyChannel)


class Channels(Mapping[Channel, AnyChannel]):
    """Every channel by its :class:`Channel`."""

    def __init__(self, channels: Sequence[AnyChannel]) -> None:
        self._by_channel: dict[Channel, AnyChannel] = {channel.channel: channel for channel in channels}

    def of_type(self, kind: type[C]) -> C:
        """The channel of this class (a channel's own webhooks, such as a call's TwiML, need it by type)."""
        return next(channel for channel in self._by_channel.values() if isinstance(channel, kind))

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
        [
            SmsChannel.from_settings(settings, pool, renderer),
            EmailChannel.from_settings(settings, pool, renderer),
            VoiceChannel.from_settings(settings, pool, renderer),
        ]
    )
