"""Operator commands: ``python -m services.subscription.cli rotate-contact-keys``."""

from __future__ import annotations

import asyncio

import typer

from services.subscription.flows.context import Context
from services.subscription.flows.keys import rotate_contact_keys as rotate_keys
from services.subscription.settings import SubscriptionSettings
from shared.db import create_pool
from shared.logging import configure_logging
from shared.serve import load_settings

cli = typer.Typer(help="Subscription service maintenance.", no_args_is_help=True)


@cli.callback()
def main() -> None:
    """Subscription service maintenance (settings from the SUBSCRIPTION_* environment)."""


async def rotate(settings: SubscriptionSettings) -> int:
    pool = await create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        return await rotate_keys(Context(settings, lambda: pool))
    finally:
        await pool.close()


@cli.command("rotate-contact-keys")
def rotate_contact_keys() -> None:
    """Re-encrypt stored contact points with the first key of SUBSCRIPTION_CONTACT_ENCRYPTION_KEYS.

    Put the new key first and keep the old ones after it, then run this. The new states go out through the
    outbox (the running service publishes them); once consumers have them, the old keys can be removed.
    """
    settings = load_settings(SubscriptionSettings)
    configure_logging(settings.service_name, settings.log_level)
    count = asyncio.run(rotate(settings))
    typer.echo(f"re-encrypted the contact points of {count} subscriptions with the newest key")


if __name__ == "__main__":
    cli()
