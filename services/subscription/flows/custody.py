"""What the other services tell subscription (consumed events): agency profiles, custody statuses and seals for
the lookup and the case file, and contact points delivery had to switch off."""

from __future__ import annotations

import logging
from datetime import datetime

from services.subscription.domain.subscription import disable_contact
from services.subscription.flows.context import Context
from services.subscription.flows.outbox import publish_state
from services.subscription.metrics import SUBSCRIPTIONS_CHANGED
from services.subscription.store import agencies, custody
from services.subscription.store.subscriptions import load_subscription, update_subscription
from shared.db import Connection
from shared.events import AgencyProfile, ContactPointDisabled, CustodyStatusChanged, SubjectIdentifier, SubjectSealed
from shared.vocabulary import normalise_identifier

log = logging.getLogger(__name__)


def _normalised(identifiers: list[SubjectIdentifier]) -> list[SubjectIdentifier]:
    return [SubjectIdentifier(kind=i.kind, value=normalise_identifier(i.value)) for i in identifiers]


async def record_agency(connection: Connection, profile: AgencyProfile) -> None:
    await agencies.upsert_agency(connection, profile)
    await agencies.save_agency_resources(connection, profile)


async def record_custody_change(
    connection: Connection, custody_event_id: str, change: CustodyStatusChanged, now: datetime
) -> None:
    await custody.link_identifiers(connection, change.agency_id, change.subject_id, _normalised(change.identifiers))
    await custody.record_custody_status(connection, change, now)
    await custody.record_case_information(connection, custody_event_id, change)


async def record_seal(connection: Connection, sealed: SubjectSealed, now: datetime) -> None:
    await custody.link_identifiers(connection, sealed.agency_id, sealed.subject_id, _normalised(sealed.identifiers))
    await custody.seal_subject(connection, sealed.agency_id, sealed.subject_id, now)
    await custody.forget_case(connection, sealed.agency_id, sealed.subject_id)


async def record_disabled_contact(
    context: Context, connection: Connection, disabled: ContactPointDisabled, now: datetime
) -> None:
    subscription_id, channel, reason = disabled.subscription_id, disabled.channel, disabled.reason
    subscription = await load_subscription(connection, subscription_id, for_update=True)
    if subscription is None:
        log.warning("contact-point.disabled for an unknown subscription", extra={"subscription_id": subscription_id})
        return
    changed = disable_contact(subscription, channel, "opted_out" if reason == "opted_out" else "hard_bounce", now)
    if changed is None:
        return
    await update_subscription(connection, changed)
    await publish_state(context, connection, changed)
    SUBSCRIPTIONS_CHANGED.labels("contact_disabled").inc()
    log.info("contact disabled", extra={"subscription_id": subscription_id, "channel": channel.value, "reason": reason})
