"""The subscription use cases, one module each: they parse with the domain, change state in one transaction, and
write the events describing the change to the outbox in that same transaction. Each function takes the service's
dependencies (:class:`~services.subscription.flows.context.Context`) first."""

from services.subscription.flows import (
    claims,
    context,
    custody,
    inbound_sms,
    keys,
    limits,
    lookup,
    manage,
    outbox,
    subscribe,
    verify,
)

__all__ = [
    "claims",
    "context",
    "custody",
    "inbound_sms",
    "keys",
    "limits",
    "lookup",
    "manage",
    "outbox",
    "subscribe",
    "verify",
]
