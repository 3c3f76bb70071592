"""Verification of a contact point: issuing a code (and an email's link), checking it, sending a new one."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from services.subscription.domain.errors import ConflictError, GoneError, NotFoundError, TooManyRequestsError
from services.subscription.domain.subscription import Contact, Subscription, code_channel, mark_verified, require_open
from services.subscription.domain.tokens import ExpiredTokenError, InvalidTokenError
from services.subscription.domain.verification import (
    Challenge,
    CodeCheck,
    check_code,
    clean_code,
    generate_code,
    hash_code,
    problem_for,
    resend_wait,
    verification_notification_id,
)
from services.subscription.flows.claims import authorize, load_for_update
from services.subscription.flows.context import Context
from services.subscription.flows.limits import ClientLimit, count_client
from services.subscription.flows.outbox import publish_state, request_notice
from services.subscription.metrics import CODES_ISSUED, SUBSCRIPTIONS_CHANGED, VERIFY_ATTEMPTS
from services.subscription.store import verification as codes
from services.subscription.store.subscriptions import load_subscription, update_subscription
from shared.db import Connection
from shared.events import NotificationKind
from shared.vocabulary import Channel, Urgency

log = logging.getLogger(__name__)

INVALID_VERIFY_LINK = "this verification link is not valid"
EXPIRED_LINK = "this link has expired: request a new code from your manage page"


async def issue_code(
    context: Context, connection: Connection, subscription: Subscription, channel: Channel, now: datetime
) -> None:
    """A new code for one contact point, sent to it (with a link, for an email address)."""
    settings = context.settings
    contact = subscription.contact(channel)
    issue = await codes.next_code_issue(connection, subscription.subscription_id, channel)
    code = generate_code()
    challenge = Challenge(
        issue=issue,
        code_hash=hash_code(settings.token_secret, subscription.subscription_id, channel, issue, code),
        created_at=now,
        expires_at=now + timedelta(seconds=settings.verification_code_ttl_seconds),
    )
    await codes.insert_code(connection, subscription.subscription_id, channel, challenge)
    verify_url = None
    if channel is Channel.EMAIL:
        verify_url = context.url(f"/v1/verify?token={context.tokens.verify(subscription.subscription_id, issue)}")
    await request_notice(
        context,
        connection,
        subscription,
        contact,
        kind=NotificationKind.VERIFICATION,
        notification_id=verification_notification_id(subscription.subscription_id, channel, issue),
        now=now,
        # Someone is waiting for this code right now: quiet hours must not hold it.
        urgency=Urgency.URGENT,
        secret_ciphertext=context.cipher.encrypt(code),
        verify_url_ciphertext=context.cipher.encrypt(verify_url) if verify_url else None,
    )
    CODES_ISSUED.labels(channel.value).inc()


def _contact_to_verify(subscription: Subscription, channel: Channel) -> Contact:
    """The contact point whose code is asked for (for a number for calls that is the SMS number, the SMS one),
    refused when the subscription is cancelled or the contact already verified."""
    channel = code_channel(subscription, channel)
    require_open(subscription)
    contact = subscription.contact(channel)
    if contact.verified:
        raise ConflictError(f"the {contact.channel.value} contact is already verified")
    return contact


async def verify_code(
    context: Context, subscription_id: str, bearer: str | None, channel: Channel, raw_code: str, *, client: str
) -> Subscription:
    await count_client(context, ClientLimit.VERIFY, client)
    await authorize(context, subscription_id, bearer)
    code = clean_code(raw_code)
    settings = context.settings
    now = context.now()
    async with context.pool.acquire() as connection, connection.transaction():
        subscription = await load_for_update(connection, subscription_id)
        channel = _contact_to_verify(subscription, channel).channel
        challenge = await codes.latest_code(connection, subscription_id, channel)
        if challenge is None:
            raise NotFoundError("no code was sent to this contact: request a new code")
        outcome = check_code(
            challenge,
            hash_code(settings.token_secret, subscription_id, channel, challenge.issue, code),
            now,
            settings.verification_max_attempts,
        )
        VERIFY_ATTEMPTS.labels(outcome.value).inc()
        if outcome in (CodeCheck.VERIFIED, CodeCheck.WRONG):
            await codes.record_attempt(connection, subscription_id, channel, challenge.issue)
        if outcome is CodeCheck.VERIFIED:
            await codes.consume_code(connection, subscription_id, channel, challenge.issue, now)
            verified = mark_verified(subscription, channel, now)
            await update_subscription(connection, verified)
            await publish_state(context, connection, verified)
    if outcome is not CodeCheck.VERIFIED:
        # The attempt is committed (it counts); the subscription itself is unchanged.
        log.info("verification failed", extra={"subscription_id": subscription_id, "outcome": outcome.value})
        raise problem_for(outcome, settings.verification_max_attempts - challenge.attempts - 1)
    SUBSCRIPTIONS_CHANGED.labels("verified").inc()
    log.info("contact verified", extra={"subscription_id": subscription_id, "channel": channel.value})
    return verified


async def verify_link(context: Context, token: str) -> Subscription:
    try:
        claim = context.tokens.read_verify(token, context.settings.verification_code_ttl_seconds)
    except ExpiredTokenError:
        raise GoneError(EXPIRED_LINK) from None
    except InvalidTokenError:
        raise NotFoundError(INVALID_VERIFY_LINK) from None
    now = context.now()
    async with context.pool.acquire() as connection, connection.transaction():
        subscription = await load_subscription(connection, claim.subscription_id, for_update=True)
        if subscription is None or not subscription.has(Channel.EMAIL):
            raise NotFoundError(INVALID_VERIFY_LINK)
        require_open(subscription)
        if subscription.contact(Channel.EMAIL).verified:
            raise ConflictError("this email address is already verified")
        challenge = await codes.latest_code(connection, claim.subscription_id, Channel.EMAIL)
        if challenge is None or challenge.issue != claim.issue:
            raise GoneError("a newer code was sent: use the newest message")
        if challenge.consumed_at is not None:
            raise ConflictError("this link was already used")
        if now >= challenge.expires_at:
            raise GoneError(EXPIRED_LINK)
        await codes.consume_code(connection, claim.subscription_id, Channel.EMAIL, challenge.issue, now)
        verified = mark_verified(subscription, Channel.EMAIL, now)
        await update_subscription(connection, verified)
        await publish_state(context, connection, verified)
    SUBSCRIPTIONS_CHANGED.labels("verified").inc()
    log.info("email verified by link", extra={"subscription_id": claim.subscription_id})
    return verified


async def resend(
    context: Context, subscription_id: str, bearer: str | None, channel: Channel, client: str
) -> Subscription:
    await count_client(context, ClientLimit.VERIFY, client)
    await authorize(context, subscription_id, bearer)
    settings = context.settings
    now = context.now()
    async with context.pool.acquire() as connection, connection.transaction():
        subscription = await load_for_update(connection, subscription_id)
        contact = _contact_to_verify(subscription, channel)
        channel = contact.channel
        if not contact.active:
            raise ConflictError(f"the {channel.value} contact is switched off; no code can be sent to it")
        issued = await codes.code_issue_times(connection, subscription_id, channel, now - timedelta(hours=1))
        wait = resend_wait(
            issued,
            now,
            min_interval_seconds=settings.resend_min_interval_seconds,
            max_per_hour=settings.resend_max_per_hour,
        )
        if wait is not None:
            raise TooManyRequestsError(
                f"a code was sent recently: you can ask for a new one in {wait} s", retry_after=wait
            )
        await issue_code(context, connection, subscription, channel, now)
    log.info("verification code resent", extra={"subscription_id": subscription_id, "channel": channel.value})
    return subscription
