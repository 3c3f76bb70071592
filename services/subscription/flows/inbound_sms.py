"""Inbound SMS (Twilio's webhook, its signature already checked): STOP, START, HELP and acknowledgements."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import datetime

from services.subscription.domain import sms
from services.subscription.domain.contacts import normalise_phone
from services.subscription.domain.errors import ConflictError, InvalidContactError, InvalidRequestError
from services.subscription.domain.subscription import Subscription, resume_phone, stop_phone
from services.subscription.flows.claims import load_for_update
from services.subscription.flows.context import Context
from services.subscription.flows.outbox import SOURCE, publish_state
from services.subscription.metrics import SMS_KEYWORDS, SUBSCRIPTIONS_CHANGED
from services.subscription.rendering import default_renderer
from services.subscription.store.inbound_sms import claim_inbound_sms
from services.subscription.store.subscriptions import subscription_ids_by_contact, update_subscription
from shared.db import Connection
from shared.envelope import new_event
from shared.events import NoticeAcknowledged
from shared.outbox import enqueue
from shared.topics import NOTIFICATION_ACKNOWLEDGED
from shared.vocabulary import Channel, Language

log = logging.getLogger(__name__)

INBOUND_SMS_PATH = "/v1/sms/inbound"
ACK_NAMESPACE = uuid.UUID("a7d1c3e5-2b4f-4a6c-8e0d-9f1b3d5c7e9a")


async def inbound_sms(context: Context, params: Mapping[str, str]) -> str:
    """Handle one inbound message; returns the TwiML answer."""
    message_sid, sender = params.get("MessageSid", ""), params.get("From", "")
    if not message_sid or not sender:
        raise InvalidRequestError("From and MessageSid are required")
    keyword = sms.classify(params.get("Body", ""))
    SMS_KEYWORDS.labels(keyword.value).inc()
    try:
        phone: str | None = normalise_phone(sender, context.settings.default_phone_region)
    except InvalidContactError:
        phone = None
    now = context.now()
    language = Language.ENGLISH
    async with context.pool.acquire() as connection, connection.transaction():
        if not await claim_inbound_sms(connection, message_sid, keyword.value):
            raise ConflictError("this message was already processed")
        index = context.cipher.blind_index(phone) if phone is not None else None
        ids = [] if index is None else await subscription_ids_by_contact(connection, Channel.SMS, index)
        if index is not None and keyword in (sms.Keyword.STOP, sms.Keyword.START):  # the calls to it too
            voice_ids = await subscription_ids_by_contact(connection, Channel.VOICE, index)
            ids = sorted({*ids, *voice_ids})
        changed_count = 0
        for subscription_id in ids:
            subscription = await load_for_update(connection, subscription_id)
            if subscription_id == ids[0]:
                language = subscription.language
            changed_count += await _apply_keyword(
                context, connection, subscription, keyword, message_sid, now=now, sender_index=index or ""
            )
    log.info(
        "inbound SMS handled",
        extra={"keyword": keyword.value, "message_sid": message_sid, "subscriptions_changed": changed_count},
    )
    # The same answer whether or not the number has subscriptions: a reply reveals nothing.
    settings = context.settings
    reply = default_renderer().sms_reply(
        keyword.value, language, service_name=settings.service_display_name, help_url=settings.help_url
    )
    return sms.twiml(reply)


async def _apply_keyword(
    context: Context,
    connection: Connection,
    subscription: Subscription,
    keyword: sms.Keyword,
    message_sid: str,
    *,
    now: datetime,
    sender_index: str,
) -> int:
    """How many subscriptions the keyword changed (0 or 1); an acknowledgement is published, nothing changes."""
    if keyword is sms.Keyword.ACKNOWLEDGE:
        contact = subscription.contact(Channel.SMS)
        if subscription.status != "active" or not (contact.active and contact.verified):
            return 0
        ack = NoticeAcknowledged(subscription_id=subscription.subscription_id, channel=Channel.SMS, at=now)
        event_id = str(uuid.uuid5(ACK_NAMESPACE, f"{message_sid}:{subscription.subscription_id}"))
        event = new_event(ack, source=SOURCE, subject=subscription.subscription_id, event_id=event_id)
        topic = context.settings.kafka.topic(NOTIFICATION_ACKNOWLEDGED.name)
        await enqueue(connection, topic, subscription.subscription_id, event)
        return 0
    if keyword is sms.Keyword.STOP:
        changed = stop_phone(subscription, sender_index, now)
    elif keyword is sms.Keyword.START:
        changed = resume_phone(subscription, sender_index, now)
    else:
        return 0
    if changed is None:
        return 0
    await update_subscription(connection, changed)
    await publish_state(context, connection, changed)
    SUBSCRIPTIONS_CHANGED.labels(f"sms_{keyword.value}").inc()
    return 1
