"""Failover across SMS providers (a circuit breaker per provider), each paced by its send slots.

Sends go through the first provider whose circuit is closed. A temporary failure or a send slower than
``slow_threshold_seconds`` counts against that provider; ``failure_threshold`` consecutive ones open its circuit for
``cooldown_seconds``, so traffic moves to the next provider. A permanent failure is returned as is: the number is
the problem, not the provider. A timeout is ambiguous (the provider may have taken the message), so it is not
retried through another provider within the same send: the caller asks the providers later (:meth:`find_sent`)
before it sends again, which keeps "at most one hand-off" intact.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from services.delivery.providers.base import (
    AMBIGUOUS_ERROR_CODE,
    OutboundSms,
    ProviderReceipt,
    SmsProvider,
    TemporaryProviderError,
)

logger = logging.getLogger(__name__)


class SendSlots(Protocol):
    """Paces one provider: ``acquire`` returns when the next message may go (see ``services.delivery.sendrate``)."""

    async def acquire(self) -> None: ...


@dataclass
class _Health:
    consecutive_failures: int = 0
    open_until: float = 0.0


class FailoverSmsProvider:
    """An :class:`SmsProvider` over an ordered list of providers; the receipt names the one that actually sent."""

    def __init__(
        self,
        providers: Sequence[SmsProvider],
        *,
        name: str = "sms-failover",
        failure_threshold: int = 3,
        cooldown_seconds: float = 60.0,
        slow_threshold_seconds: float = 5.0,
        rate_limiters: Mapping[str, SendSlots] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not providers:
            raise ValueError("at least one SMS provider is required")
        names = [provider.name for provider in providers]
        if len(set(names)) != len(names):
            raise ValueError("SMS provider names must be unique")
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.name = name
        self.providers = tuple(providers)
        self.failure_threshold = failure_threshold
        self.cooldown_seconds = cooldown_seconds
        self.slow_threshold_seconds = slow_threshold_seconds
        self._rate_limiters = dict(rate_limiters or {})
        self._clock = clock
        self._health = {provider.name: _Health() for provider in self.providers}

    def get(self, name: str) -> SmsProvider | None:
        """The provider of that name (e.g. to ask it about a message it sent), if configured."""
        return next((provider for provider in self.providers if provider.name == name), None)

    def is_healthy(self, name: str) -> bool:
        return self._health[name].open_until <= self._clock()

    def _candidates(self) -> list[SmsProvider]:
        """Healthy providers in configured order; if none is, the one whose cool-down ends first (a probe)."""
        healthy = [provider for provider in self.providers if self.is_healthy(provider.name)]
        if healthy:
            return healthy
        return [min(self.providers, key=lambda provider: self._health[provider.name].open_until)]

    def _record_failure(self, name: str, why: str) -> None:
        health = self._health[name]
        health.consecutive_failures += 1
        if health.consecutive_failures >= self.failure_threshold:
            health.open_until = self._clock() + self.cooldown_seconds
            logger.warning(
                "sms provider marked unhealthy",
                extra={"provider": name, "reason": why, "cooldown_seconds": self.cooldown_seconds},
            )

    def _record_success(self, name: str) -> None:
        health = self._health[name]
        health.consecutive_failures = 0
        health.open_until = 0.0

    async def send(self, message: OutboundSms) -> ProviderReceipt:
        last_error: TemporaryProviderError | None = None
        for provider in self._candidates():
            limiter = self._rate_limiters.get(provider.name)
            if limiter is not None:
                await limiter.acquire()
            started = self._clock()
            try:
                receipt = await provider.send(message)
            except TemporaryProviderError as error:
                self._record_failure(provider.name, f"temporary failure {error.code or ''}".strip())
                if error.code == AMBIGUOUS_ERROR_CODE:
                    raise
                last_error = error
                continue
            if self._clock() - started > self.slow_threshold_seconds:
                self._record_failure(provider.name, "slow")
            else:
                self._record_success(provider.name)
            return receipt
        assert last_error is not None  # noqa: S101 - the loop ran at least once and every pass failed
        raise last_error

    async def find_sent(self, to: str, since: datetime, fingerprint: str) -> ProviderReceipt | None:
        """Whichever provider took the message (any of them may have, after a failover); None if none did.

        Every provider is asked: one that cannot tell now makes the whole answer "cannot tell" (raises).
        """
        for provider in self.providers:
            found = await provider.find_sent(to, since, fingerprint)
            if found is not None:
                return found
        return None

    async def close(self) -> None:
        for provider in self.providers:
            await provider.close()
