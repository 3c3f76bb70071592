"""What the holder of a manage link can do (see, change, add or remove a contact, renew the link, cancel), and
RFC 8058 one-click unsubscribe from emails."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, time

from services.subscription.domain import subscription as rules
from services.subscription.domain.errors import NotFoundError
from services.subscription.domain.pin import clean_pin, hash_pin
from services.subscription.domain.subscription import Subscription
from services.subscription.domain.tokens import SubscriptionClaim
from services.subscription.flows.claims import (
    INVALID_MANAGE_LINK,
    INVALID_UNSUBSCRIBE_LINK,
    claimed,
    read_manage,
    read_unsubscribe,
)
from services.subscription.flows.context import Context
from services.subscription.flows.limits import ClientLimit, contact_limit, count, count_client
from services.subscription.flows.outbox import announce, publish_state
from services.subscription.flows.subscribe import new_contact, normalised_contact
from services.subscription.flows.verify import issue_code
from services.subscription.metrics import SUBSCRIPTIONS_CHANGED
from services.subscription.store.subscriptions import update_subscription
from shared.db import Connection
from shared.events import SubscriptionChange
from shared.vocabulary import Channel, CustodyStatus, Language

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Preferences:
    language: Language | None = None
    timezone: str | None = None
    event_types: list[CustodyStatus] | None = None
    quiet_hours: tuple[time, time] | None = None


Change = Callable[[Subscription, datetime], Subscription | None]
"""A rule of ``domain.subscription``: the changed subscription, or None when nothing changes."""


async def change_claimed(
    context: Context,
    claim: SubscriptionClaim,
    invalid_link: str,
    change: Change,
    *,
    outcome: str,
    message: str,
    announced: SubscriptionChange | None = None,
    then: Callable[[Connection, Subscription], Awaitable[None]] | None = None,
) -> Subscription:
    """Apply a link holder's change to their subscription and publish it; unchanged, it is returned as it was.
    ``announced`` tells the subscriber's verified contacts; ``then`` runs in the same transaction."""
    now = context.now()
    async with context.pool.acquire() as connection, connection.transaction():
        subscription = await claimed(connection, claim, for_update=True, problem=NotFoundError(invalid_link))
        changed = change(subscription, now)
        if changed is None:
            return subscription
        await update_subscription(connection, changed)
        await publish_state(context, connection, changed)
        if announced is not None:
            await announce(context, connection, changed, announced, now)
        if then is not None:
            await then(connection, changed)
    SUBSCRIPTIONS_CHANGED.labels(outcome).inc()
    log.info(message, extra={"subscription_id": changed.subscription_id})
    return changed


async def change_by_manage_link(
    context: Context,
    token: str,
    client: str,
    change: Change,
    *,
    outcome: str,
    message: str,
    announced: SubscriptionChange,
    then: Callable[[Connection, Subscription], Awaitable[None]] | None = None,
) -> Subscription:
    """A change asked for with the manage link: counted against the caller, told to the verified contacts."""
    await count_client(context, ClientLimit.MANAGE, client)
    return await change_claimed(
        context,
        read_manage(context, token),
        INVALID_MANAGE_LINK,
        change,
        outcome=outcome,
        message=message,
        announced=announced,
        then=then,
    )


async def manage_view(context: Context, token: str, client: str) -> Subscription:
    await count_client(context, ClientLimit.MANAGE, client)
    claim = read_manage(context, token)
    async with context.pool.acquire() as connection:
        return await claimed(connection, claim, for_update=False, problem=NotFoundError(INVALID_MANAGE_LINK))


async def manage_update(context: Context, token: str, preferences: Preferences, client: str) -> Subscription:
    def change(subscription: Subscription, now: datetime) -> Subscription | None:
        return rules.change_preferences(
            subscription,
            now,
            language=preferences.language,
            timezone=preferences.timezone,
            event_types=preferences.event_types,
            quiet_hours=preferences.quiet_hours,
        )

    return await change_by_manage_link(
        context,
        token,
        client,
        change,
        outcome="changed",
        message="subscription changed",
        announced=SubscriptionChange.PREFERENCES,
    )


async def manage_cancel(context: Context, token: str, client: str) -> Subscription:
    return await change_by_manage_link(
        context,
        token,
        client,
        rules.cancel,
        outcome="cancelled",
        message="subscription cancelled",
        announced=SubscriptionChange.CANCELLED,
    )


async def renew_manage_link(context: Context, token: str, client: str) -> Subscription:
    """ "Send me a new link": a new nonce (old manage and unsubscribe links stop working), sent to the verified
    contacts only, never shown to whoever asked (who may hold a leaked link)."""

    def change(subscription: Subscription, now: datetime) -> Subscription:
        return rules.renew_link(subscription, secrets.token_urlsafe(16), now)

    return await change_by_manage_link(
        context,
        token,
        client,
        change,
        outcome="link_renewed",
        message="manage link renewed",
        announced=SubscriptionChange.NEW_LINK,
    )


async def add_contact(
    context: Context, token: str, channel: Channel, raw: str, client: str, *, pin: str | None = None
) -> Subscription:
    """Add a phone, an email or a number for calls (with its PIN); it is sent a code (a number for calls: a call
    reading it) and gets nothing else until verified. The subscription's verified SMS number needs no code."""
    await count_client(context, ClientLimit.MANAGE, client)
    claim = read_manage(context, token)
    value, index_form = normalised_contact(context, channel, raw)
    pin_hash = None
    if channel is Channel.VOICE:
        pin_hash = hash_pin(context.settings.blind_index_key, claim.subscription_id, clean_pin(pin or ""))
    await count(context, contact_limit(context), context.cipher.blind_index(index_form))
    contact = new_contact(context, channel, value, index_form, pin_hash=pin_hash)

    def change(subscription: Subscription, now: datetime) -> Subscription:
        return rules.add_contact(subscription, contact, now)

    async def send_code(connection: Connection, changed: Subscription) -> None:
        if not changed.contact(channel).verified:
            await issue_code(context, connection, changed, channel, changed.updated_at)

    return await change_claimed(
        context,
        claim,
        INVALID_MANAGE_LINK,
        change,
        outcome="contact_added",
        message="contact added",
        announced=SubscriptionChange.CONTACT_ADDED,
        then=send_code,
    )


async def remove_contact(context: Context, token: str, channel: Channel, client: str) -> Subscription:
    def change(subscription: Subscription, now: datetime) -> Subscription:
        return rules.remove_contact(subscription, channel, now)

    return await change_by_manage_link(
        context,
        token,
        client,
        change,
        outcome="contact_removed",
        message="contact removed",
        announced=SubscriptionChange.CONTACT_REMOVED,
    )


async def check_unsubscribe_token(context: Context, token: str) -> Subscription:
    claim = read_unsubscribe(context, token)
    async with context.pool.acquire() as connection:
        return await claimed(connection, claim, for_update=False, problem=NotFoundError(INVALID_UNSUBSCRIBE_LINK))


async def unsubscribe_email(context: Context, token: str) -> Subscription:
    def change(subscription: Subscription, now: datetime) -> Subscription | None:
        return rules.unsubscribe(subscription, Channel.EMAIL, now)

    return await change_claimed(
        context,
        read_unsubscribe(context, token),
        INVALID_UNSUBSCRIBE_LINK,
        change,
        outcome="email_unsubscribed",
        message="email unsubscribed (one-click)",
    )
