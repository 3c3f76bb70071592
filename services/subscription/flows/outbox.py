"""The events subscription writes to its outbox: a subscription's new state, and notices for delivery to send."""

from __future__ import annotations

import uuid
from datetime import datetime

from services.subscription.domain.subscription import Contact, Subscription
from services.subscription.flows.context import Context
from shared.db import Connection
from shared.envelope import event_source, new_event
from shared.events import NotificationKind, NotificationRequested, SubscriptionChange
from shared.outbox import enqueue
from shared.topics import NOTIFICATION_REQUESTED, SUBSCRIPTION_STATE
from shared.vocabulary import Urgency

SOURCE = event_source("subscription")
CHANGE_NAMESPACE = uuid.UUID("3f6b8d2a-71c4-4e95-a0d3-5b7e9c1f2a48")


async def publish_state(context: Context, connection: Connection, subscription: Subscription) -> None:
    state = subscription.to_state(
        manage_url_ciphertext=context.cipher.encrypt(context.manage_url(subscription)),
        unsubscribe_url_ciphertext=context.cipher.encrypt(context.unsubscribe_url(subscription)),
    )
    event = new_event(
        state, source=SOURCE, subject=subscription.subscription_id, event_id=subscription.state_event_id()
    )
    topic = context.settings.kafka.topic(SUBSCRIPTION_STATE.name)
    await enqueue(connection, topic, subscription.subscription_id, event)


async def request_notice(
    context: Context,
    connection: Connection,
    subscription: Subscription,
    contact: Contact,
    *,
    kind: NotificationKind,
    notification_id: str,
    now: datetime,
    **fields: object,
) -> None:
    cipher = context.cipher
    notice = NotificationRequested.model_validate(
        {
            "notification_id": notification_id,
            "kind": kind,
            "subscription_id": subscription.subscription_id,
            "agency_id": subscription.agency_id,
            "channel": contact.channel,
            "contact_ciphertext": contact.ciphertext,
            "contact_masked": contact.masked,
            "language": subscription.language,
            "timezone": subscription.timezone,
            "urgency": Urgency.INFORMATIONAL,
            "quiet_hours_start": subscription.quiet_hours_start,
            "quiet_hours_end": subscription.quiet_hours_end,
            "manage_url_ciphertext": cipher.encrypt(context.manage_url(subscription)),
            "unsubscribe_url_ciphertext": cipher.encrypt(context.unsubscribe_url(subscription)),
            "requested_at": now,
            **fields,
        }
    )
    event = new_event(notice, source=SOURCE, subject=subscription.subscription_id, event_id=notification_id)
    await enqueue(connection, context.settings.kafka.topic(NOTIFICATION_REQUESTED.name), notification_id, event)


async def announce(
    context: Context, connection: Connection, subscription: Subscription, change: SubscriptionChange, now: datetime
) -> None:
    """Tell every verified, working contact point what was done, so a stranger holding the link is noticed."""
    for contact in subscription.contacts:
        if contact.verified and contact.active:
            notification_id = str(
                uuid.uuid5(CHANGE_NAMESPACE, f"{subscription.subscription_id}:{subscription.version}:{contact.channel}")
            )
            await request_notice(
                context,
                connection,
                subscription,
                contact,
                kind=NotificationKind.SUBSCRIPTION_CHANGED,
                notification_id=notification_id,
                now=now,
                change=change,
            )
