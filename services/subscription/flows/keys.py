"""Rotating the contact-point encryption key: every subscription re-encrypted and its new state published."""

from __future__ import annotations

import logging

from services.subscription.domain.subscription import reencrypted
from services.subscription.flows.claims import load_for_update
from services.subscription.flows.context import Context
from services.subscription.flows.outbox import publish_state
from services.subscription.store.subscriptions import subscription_ids_after, update_subscription

log = logging.getLogger(__name__)


async def rotate_contact_keys(context: Context, batch_size: int = 200) -> int:
    """Re-encrypt every subscription's contact points with the newest key and publish the new state; returns
    how many subscriptions were rewritten. Keep the old key configured until this has run."""
    rotated = 0
    after = ""
    while True:
        async with context.pool.acquire() as connection:
            ids = await subscription_ids_after(connection, after, batch_size)
        for subscription_id in ids:
            async with context.pool.acquire() as connection, connection.transaction():
                subscription = await load_for_update(connection, subscription_id)
                changed = reencrypted(subscription, context.cipher.rotate, context.now())
                await update_subscription(connection, changed)
                await publish_state(context, connection, changed)
            rotated += 1
        if len(ids) < batch_size:
            log.info("contact keys rotated", extra={"subscriptions": rotated})
            return rotated
        after = ids[-1]
