"""What every use case needs: settings, the database pool, the contact cipher, the link tokens and a clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg

from services.subscription.domain.subscription import Subscription
from services.subscription.domain.tokens import Tokens
from services.subscription.settings import SubscriptionSettings
from shared.crypto import ContactCipher


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Context:
    settings: SubscriptionSettings
    get_pool: Callable[[], asyncpg.Pool]
    """The pool is opened when the service starts, after the context is built."""
    clock: Callable[[], datetime] = utc_now
    cipher: ContactCipher = field(init=False)
    tokens: Tokens = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cipher", self.settings.contact_cipher())
        object.__setattr__(self, "tokens", Tokens(self.settings.token_secret))

    @property
    def pool(self) -> asyncpg.Pool:
        return self.get_pool()

    def now(self) -> datetime:
        return self.clock()

    def url(self, path: str) -> str:
        return self.settings.public_base_url.rstrip("/") + path

    def manage_url(self, subscription: Subscription) -> str:
        return self.url(f"/v1/manage/{self.tokens.manage(subscription.subscription_id, subscription.manage_nonce)}")

    def unsubscribe_url(self, subscription: Subscription) -> str:
        return self.url(
            f"/v1/unsubscribe/{self.tokens.unsubscribe(subscription.subscription_id, subscription.manage_nonce)}"
        )
