"""Rate limits per caller and per contact point, counted in PostgreSQL, and the pruning of old windows."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from enum import StrEnum

from services.subscription.domain.errors import TooManyRequestsError
from services.subscription.domain.ratelimit import Limit, retry_after, window_start
from services.subscription.flows.context import Context
from services.subscription.store.inbound_sms import forget_inbound_sms
from services.subscription.store.rate_limits import count_hit, forget_old_windows

log = logging.getLogger(__name__)


class ClientLimit(StrEnum):
    """What a caller (by address) is counted for."""

    SUBSCRIBE = "subscribe"
    LOOKUP = "lookup"
    VERIFY = "verify"
    MANAGE = "manage"


def client_limit(context: Context, kind: ClientLimit) -> Limit:
    s = context.settings
    hits, window = {
        ClientLimit.SUBSCRIBE: (s.subscribe_limit_per_client_per_hour, timedelta(hours=1)),
        ClientLimit.LOOKUP: (s.lookup_limit_per_client_per_minute, timedelta(minutes=1)),
        ClientLimit.VERIFY: (s.verify_limit_per_client_per_hour, timedelta(hours=1)),
        ClientLimit.MANAGE: (s.manage_limit_per_client_per_minute, timedelta(minutes=1)),
    }[kind]
    return Limit(f"{kind.value}-client", hits, window)


def contact_limit(context: Context) -> Limit:
    return Limit("subscribe-contact", context.settings.subscribe_limit_per_contact_per_day, timedelta(days=1))


async def count(context: Context, limit: Limit, who: str) -> None:
    """Count a request against ``limit`` for ``who``; 429 once over. Committed on its own, so a request that
    fails later still counts (otherwise failures would be free to repeat)."""
    now = context.now()
    bucket = context.cipher.blind_index(f"rate-limit:{limit.name}:{who}")
    async with context.pool.acquire() as connection:
        hits = await count_hit(connection, bucket, window_start(now, limit.window))
    if hits > limit.max_hits:
        log.warning("rate limit %s exceeded", limit.name)
        raise TooManyRequestsError(
            "too many requests: please wait and try again", retry_after=retry_after(now, limit.window)
        )


async def count_client(context: Context, kind: ClientLimit, client: str) -> None:
    await count(context, client_limit(context, kind), client)


async def prune_forever(context: Context, every_seconds: float = 600.0) -> None:
    """Forget finished rate-limit windows and old inbound message ids (replays come within minutes)."""
    while True:
        now = context.now()
        async with context.pool.acquire() as connection:
            await forget_old_windows(connection, now - timedelta(days=2))
            await forget_inbound_sms(connection, now - timedelta(days=7))
        await asyncio.sleep(every_seconds)
