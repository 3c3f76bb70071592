"""What every command takes: the services' URLs and credentials, as options or ``CUSTODY_WATCH_*`` variables."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.client import Api

DEFAULT_INGEST = "http://127.0.0.1:8001"
DEFAULT_DELIVERY = "http://127.0.0.1:8004"
"""The ports ``make run`` prefers."""

IngestUrl = Annotated[str, typer.Option("--ingest-url", envvar="CUSTODY_WATCH_INGEST_URL", help="The ingest service.")]
DeliveryUrl = Annotated[
    str, typer.Option("--delivery-url", envvar="CUSTODY_WATCH_DELIVERY_URL", help="The delivery service.")
]
ApiKey = Annotated[
    str | None,
    typer.Option("--api-key", envvar="CUSTODY_WATCH_API_KEY", help="The agency's feed API key.", show_default=False),
]
AdminToken = Annotated[
    str | None,
    typer.Option("--admin-token", envvar="CUSTODY_WATCH_ADMIN_TOKEN", help="Ingest's admin token.", show_default=False),
]
OperatorToken = Annotated[
    str | None,
    typer.Option(
        "--operator-token", envvar="CUSTODY_WATCH_OPERATOR_TOKEN", help="Delivery's operator token.", show_default=False
    ),
]


def feed_api(url: str, api_key: str | None) -> Api:
    return Api(url, api_key, credential="API key", setting="--api-key or CUSTODY_WATCH_API_KEY")


def admin_api(url: str, token: str | None) -> Api:
    return Api(url, token, credential="admin token", setting="--admin-token or CUSTODY_WATCH_ADMIN_TOKEN")


def operator_api(url: str, token: str | None) -> Api:
    return Api(url, token, credential="operator token", setting="--operator-token or CUSTODY_WATCH_OPERATOR_TOKEN")
