"""Capped exponential backoff with jitter, and waiting out a dependency that is down."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from shared.failures import transient_dependency

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    initial: float = 0.5
    maximum: float = 30.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait before try ``attempt + 1`` (``attempt`` counts from 1): between half and all of the capped
        exponential ceiling, so many waiters do not retry in lockstep."""
        ceiling = min(self.maximum, self.initial * 2 ** min(max(0, attempt - 1), 32))
        return (rng or random).uniform(ceiling / 2, ceiling)


async def until_available(operation: Callable[[], Awaitable[T]], *, what: str, backoff: Backoff = Backoff()) -> T:
    """Run ``operation`` until it succeeds, waiting out transient failures for as long as they last.

    A failure that is not transient (a wrong password, a bad configuration) is raised at once: waiting would not help.
    """
    attempt = 0
    while True:
        try:
            return await operation()
        except Exception as error:
            dependency = transient_dependency(error)
            if dependency is None:
                raise
            attempt += 1
            delay = backoff.delay(attempt)
            log.warning(
                "%s: %s unavailable (%s); trying again in %.1f s", what, dependency, type(error).__name__, delay
            )
            await asyncio.sleep(delay)
