"""The subscription a link's token names, checked against its current nonce (a renewed link ends old ones)."""

from __future__ import annotations

import secrets

from services.subscription.domain.errors import ForbiddenError, NotFoundError, UnauthorizedError
from services.subscription.domain.subscription import Subscription
from services.subscription.domain.tokens import InvalidTokenError, SubscriptionClaim
from services.subscription.flows.context import Context
from services.subscription.store.subscriptions import load_subscription
from shared.db import Connection

INVALID_MANAGE_LINK = "this manage link is not valid"
INVALID_UNSUBSCRIBE_LINK = "this unsubscribe link is not valid"
NOT_YOUR_SUBSCRIPTION = "this token is not valid for this subscription"


async def claimed(
    connection: Connection, claim: SubscriptionClaim, *, for_update: bool, problem: Exception
) -> Subscription:
    subscription = await load_subscription(connection, claim.subscription_id, for_update=for_update)
    if subscription is None or not secrets.compare_digest(subscription.manage_nonce, claim.nonce):
        raise problem
    return subscription


async def load_for_update(connection: Connection, subscription_id: str) -> Subscription:
    subscription = await load_subscription(connection, subscription_id, for_update=True)
    if subscription is None:
        raise NotFoundError("no such subscription")
    return subscription


def read_manage(context: Context, token: str) -> SubscriptionClaim:
    try:
        return context.tokens.read_manage(token)
    except InvalidTokenError:
        raise NotFoundError(INVALID_MANAGE_LINK) from None


def read_unsubscribe(context: Context, token: str) -> SubscriptionClaim:
    try:
        return context.tokens.read_unsubscribe(token)
    except InvalidTokenError:
        raise NotFoundError(INVALID_UNSUBSCRIBE_LINK) from None


async def authorize(context: Context, subscription_id: str, bearer: str | None) -> None:
    """The bearer token is the manage link's token, for this very subscription."""
    if not bearer:
        raise UnauthorizedError("send the token of your manage link as a bearer token")
    try:
        claim = context.tokens.read_manage(bearer)
    except InvalidTokenError:
        raise ForbiddenError(NOT_YOUR_SUBSCRIPTION) from None
    if claim.subscription_id != subscription_id:
        raise ForbiddenError(NOT_YOUR_SUBSCRIPTION)
    async with context.pool.acquire() as connection:
        await claimed(connection, claim, for_update=False, problem=ForbiddenError(NOT_YOUR_SUBSCRIPTION))
