"""``custody-watch``: push feeds, manage agencies and their keys, follow deliveries, over the public HTTP APIs.

Every URL and credential is an option or an environment variable (``CUSTODY_WATCH_INGEST_URL``,
``CUSTODY_WATCH_API_KEY``, ``CUSTODY_WATCH_ADMIN_TOKEN``, ``CUSTODY_WATCH_DELIVERY_URL``,
``CUSTODY_WATCH_OPERATOR_TOKEN``); the defaults are the ports ``make run`` prefers. Results go to stdout, progress and
explanations to stderr, so ``KEY=$(custody-watch agency key create ...)`` captures just the key.
"""

from __future__ import annotations

import typer

from cli.commands.agency import agency_app
from cli.commands.delivery import delivery_app
from cli.commands.feed import feed_app

app = typer.Typer(
    help="Custody Watch for agencies and operators: push feeds, manage agencies and keys, follow deliveries. "
    "URLs and credentials are options or CUSTODY_WATCH_* environment variables (see each command's --help).\n\n"
    "Two maintenance commands work on a service's own database instead, where that service runs and with its "
    "settings in the environment: python -m services.subscription.cli rotate-contact-keys (re-encrypts stored "
    "contact points under the first of SUBSCRIPTION_CONTACT_ENCRYPTION_KEYS) and python -m services.ops.cli "
    "create-operator (dashboard accounts).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
app.add_typer(feed_app, name="feed")
app.add_typer(agency_app, name="agency")
app.add_typer(delivery_app, name="delivery")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
