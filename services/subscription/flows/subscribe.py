"""Subscribing to a case: contact points checked and stored encrypted, a code sent to each, the state published."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import time

from services.subscription.domain.contacts import (
    email_index_form,
    normalise_email,
    normalise_phone,
    normalise_voice_number,
)
from services.subscription.domain.errors import InvalidRequestError, ProblemCode
from services.subscription.domain.pin import clean_pin, hash_pin
from services.subscription.domain.subscription import (
    Contact,
    Subscription,
    new_subscription,
    normalise_event_types,
    validate_timezone,
    verified_through_sms,
)
from services.subscription.flows.context import Context
from services.subscription.flows.limits import ClientLimit, contact_limit, count, count_client
from services.subscription.flows.lookup import require_active_agency
from services.subscription.flows.outbox import publish_state
from services.subscription.flows.verify import issue_code
from services.subscription.metrics import SUBSCRIPTIONS_CHANGED
from services.subscription.store.subscriptions import insert_subscription
from shared.crypto import mask_email, mask_phone
from shared.events import SubjectIdentifier
from shared.vocabulary import Channel, CustodyStatus, Language, normalise_identifier

log = logging.getLogger(__name__)

DEFAULT_QUIET_HOURS = (time(21, 0), time(7, 0))


@dataclass(frozen=True)
class NewSubscription:
    agency_id: str
    identifier: SubjectIdentifier
    sms: str | None
    email: str | None
    language: Language
    timezone: str
    event_types: list[CustodyStatus] | None
    quiet_hours: tuple[time, time] | None
    voice: str | None = None
    pin: str | None = None


@dataclass(frozen=True)
class Created:
    subscription: Subscription
    manage_url: str


def normalised_contact(context: Context, channel: Channel, raw: str) -> tuple[str, str]:
    """The contact as stored and the form its blind index is computed from."""
    region = context.settings.default_phone_region
    if channel is Channel.SMS:
        phone = normalise_phone(raw, region)
        return phone, phone
    if channel is Channel.VOICE:
        number = normalise_voice_number(raw, region)
        return number, number
    address = normalise_email(raw)
    return address, email_index_form(address)


def new_contact(
    context: Context, channel: Channel, value: str, index_form: str, *, pin_hash: str | None = None
) -> Contact:
    return Contact(
        channel=channel,
        ciphertext=context.cipher.encrypt(value),
        masked=mask_email(value) if channel is Channel.EMAIL else mask_phone(value),
        blind_index=context.cipher.blind_index(index_form),
        pin_hash=pin_hash,
    )


def voice_pin(request: NewSubscription) -> str | None:
    """The PIN a voice number needs (checked against easy guesses); none without a voice number."""
    if request.voice is None:
        if request.pin is not None:
            raise InvalidRequestError(
                "a PIN is only for voice calls: give a number to call (voice) too", code=ProblemCode.PIN_WITHOUT_VOICE
            )
        return None
    if request.pin is None:
        raise InvalidRequestError(
            "choose a 4-digit PIN for voice calls: you key it in to confirm a call", code=ProblemCode.PIN_REQUIRED
        )
    return clean_pin(request.pin)


async def subscribe(context: Context, request: NewSubscription, client: str) -> Created:
    await count_client(context, ClientLimit.SUBSCRIBE, client)
    if request.sms is None and request.email is None and request.voice is None:
        raise InvalidRequestError(
            "give a mobile number (sms), an email address, or both; or a number to call (voice)",
            code=ProblemCode.NO_CONTACT,
        )
    pin = voice_pin(request)
    timezone = validate_timezone(request.timezone)
    event_types = normalise_event_types(request.event_types)
    identifier = SubjectIdentifier(kind=request.identifier.kind, value=normalise_identifier(request.identifier.value))
    contacts = [
        (channel, *normalised_contact(context, channel, raw))
        for channel, raw in ((Channel.SMS, request.sms), (Channel.EMAIL, request.email), (Channel.VOICE, request.voice))
        if raw is not None
    ]
    await require_active_agency(context, request.agency_id)
    for _, _, index_form in contacts:
        await count(context, contact_limit(context), context.cipher.blind_index(index_form))

    now = context.now()
    subscription_id = str(uuid.uuid4())
    pin_hash = hash_pin(context.settings.blind_index_key, subscription_id, pin) if pin else None
    subscription = new_subscription(
        subscription_id=subscription_id,
        agency_id=request.agency_id,
        identifier=identifier,
        contacts=tuple(
            new_contact(context, channel, value, index_form, pin_hash=pin_hash if channel is Channel.VOICE else None)
            for channel, value, index_form in contacts
        ),
        language=request.language,
        timezone=timezone,
        event_types=tuple(event_types),
        quiet_hours=request.quiet_hours or DEFAULT_QUIET_HOURS,
        now=now,
    )
    async with context.pool.acquire() as connection, connection.transaction():
        await insert_subscription(connection, subscription)
        for contact in subscription.contacts:
            if not verified_through_sms(subscription, contact):  # the SMS code verifies that number's calls too
                await issue_code(context, connection, subscription, contact.channel, now)
        await publish_state(context, connection, subscription)
    SUBSCRIPTIONS_CHANGED.labels("created").inc()
    log.info(
        "subscription created",
        extra={
            "subscription_id": subscription.subscription_id,
            "agency_id": subscription.agency_id,
            "channels": [c.channel.value for c in subscription.contacts],
        },
    )
    return Created(subscription, context.manage_url(subscription))
