"""``custody-watch delivery``: what the delivery service sent, as it happens."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from cli import output
from cli.client import CliError
from cli.options import DEFAULT_DELIVERY, DeliveryUrl, OperatorToken, operator_api
from cli.output import err, fail, out

delivery_app = typer.Typer(help="What the delivery service sent (operator token).", no_args_is_help=True)


@delivery_app.command("tail")
def delivery_tail(
    *,
    agency: Annotated[str | None, typer.Option(help="Only this agency's notifications.")] = None,
    subscription: Annotated[str | None, typer.Option(help="Only this subscription's notifications.")] = None,
    case: Annotated[str | None, typer.Option(help="Only notifications about this case/booking/person number.")] = None,
    status: Annotated[str | None, typer.Option(help="Only this status, e.g. permanent-failure.")] = None,
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between polls.")] = 2.0,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Most recent notifications read per poll.")] = 100,
    once: Annotated[bool, typer.Option("--once", help="Print the current page and exit.")] = False,
    operator_token: OperatorToken = None,
    delivery_url: DeliveryUrl = DEFAULT_DELIVERY,
) -> None:
    """Print notifications as they are created and change status (time, id, kind, channel, masked contact, status,
    provider, error), until Ctrl-C."""
    params = {"agency_id": agency, "subscription_id": subscription, "case": case, "status": status, "limit": limit}
    query = {key: value for key, value in params.items() if value is not None}
    seen: dict[str, tuple[Any, ...]] = {}
    try:
        with operator_api(delivery_url, operator_token) as api:
            while True:
                page = api.request("GET", "/v1/notifications", params=query, retry=not once)
                for notification in output.changed_notifications(page.get("notifications", []), seen):
                    out.print(output.notification_line(notification))
                if once:
                    if not seen:
                        err.print("no notifications match")
                    return
                time.sleep(interval)
    except CliError as error:
        raise fail(str(error)) from None
    except KeyboardInterrupt:
        return
