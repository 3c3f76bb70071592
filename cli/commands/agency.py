"""``custody-watch agency``: agencies, their status codes and CSV columns, and their feed API keys (admin token).

Everything goes through ingest's admin API (``/v1/admin``), so the service checks, stores and publishes each change
(a new profile on ``agency.profile``) exactly as it does for any other client.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cli import output
from cli.client import CliError
from cli.options import DEFAULT_INGEST, AdminToken, IngestUrl, admin_api
from cli.output import err, fail, out

agency_app = typer.Typer(
    help="Agencies, their status codes and CSV columns, and their feed API keys (admin token).", no_args_is_help=True
)
key_app = typer.Typer(help="An agency's feed API keys.", no_args_is_help=True)
agency_app.add_typer(key_app, name="key")


def _json_file(path: Path | None, what: str) -> Any:
    if path is None:
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CliError(f"cannot read the {what} from {path}: {error}") from None


def _json_given(source: str, what: str) -> Any:
    """A JSON document given inline, or the path of a file that holds one."""
    path = Path(source)
    if path.is_file():
        return _json_file(path, what)
    try:
        return json.loads(source)
    except ValueError as error:
        raise CliError(f"the {what} is neither a file nor valid JSON: {error}") from None


def _update(agency_id: str, changes: dict[str, Any], admin_token: str | None, ingest_url: str) -> dict[str, Any]:
    with admin_api(ingest_url, admin_token) as api:
        updated: dict[str, Any] = api.request("PATCH", f"/v1/admin/agencies/{agency_id}", json=changes)
    return updated


@agency_app.command("create")
def agency_create(
    agency_id: Annotated[str, typer.Argument(help="Lower-case letters, digits and dashes, e.g. travis-county-jail.")],
    *,
    name: Annotated[str, typer.Option(help="The agency's name as victims read it.")],
    timezone: Annotated[str, typer.Option(help="IANA time zone, e.g. America/Chicago.")],
    contact_phone: Annotated[str | None, typer.Option(help="The agency's public phone.")] = None,
    victim_services_phone: Annotated[
        str | None, typer.Option(help="Victim services' phone, quoted in notices.")
    ] = None,
    victim_services_url: Annotated[str | None, typer.Option(help="Victim services' web page.")] = None,
    feed_interval: Annotated[
        int, typer.Option(min=1, max=10_080, help="Minutes between feeds before the feed counts as stale.")
    ] = 60,
    status_map: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="JSON: the agency's status codes.")
    ] = None,
    csv_columns: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="JSON: canonical field -> CSV header.")
    ] = None,
    admin_token: AdminToken = None,
    ingest_url: IngestUrl = DEFAULT_INGEST,
) -> None:
    """Create an agency. Then give it a key: custody-watch agency key create AGENCY_ID."""
    body: dict[str, Any] = {
        "agency_id": agency_id,
        "name": name,
        "timezone": timezone,
        "expected_feed_interval_minutes": feed_interval,
        "contact_phone": contact_phone,
        "victim_services_phone": victim_services_phone,
        "victim_services_url": victim_services_url,
    }
    try:
        body["status_map"] = _json_file(status_map, "status map")
        body["csv_columns"] = _json_file(csv_columns, "CSV columns")
        with admin_api(ingest_url, admin_token) as api:
            created = api.request(
                "POST", "/v1/admin/agencies", json={k: v for k, v in body.items() if v is not None}, ok=(201,)
            )
    except CliError as error:
        raise fail(str(error)) from None
    out.print(f"created agency {created['agency_id']} ({created['name']}, {created['timezone']})")
    err.print(f"next: custody-watch agency key create {created['agency_id']}")


@agency_app.command("list")
def agency_list(admin_token: AdminToken = None, ingest_url: IngestUrl = DEFAULT_INGEST) -> None:
    """Every agency, with the state of its feed."""
    try:
        with admin_api(ingest_url, admin_token) as api:
            agencies = api.request("GET", "/v1/admin/agencies")
            health = api.request("GET", "/v1/admin/feed-health")
    except CliError as error:
        raise fail(str(error)) from None
    if not agencies:
        err.print("no agencies yet: custody-watch agency create AGENCY_ID --name ... --timezone ...")
        return
    table = Table("agency", "name", "time zone", "state", "last feed", box=None, pad_edge=False)
    for row in output.agency_rows(agencies, health):
        table.add_row(*row)
    out.print(table)


@agency_app.command("set-status-map")
def agency_set_status_map(
    agency_id: str,
    mapping: Annotated[
        str, typer.Argument(help='JSON, inline or a file: code -> {"status": ..., "release_reason": ...}.')
    ],
    admin_token: AdminToken = None,
    ingest_url: IngestUrl = DEFAULT_INGEST,
) -> None:
    """Replace the agency's status map: its own status codes -> canonical statuses (and release reasons)."""
    try:
        updated = _update(agency_id, {"status_map": _json_given(mapping, "status map")}, admin_token, ingest_url)
    except CliError as error:
        raise fail(str(error)) from None
    out.print(f"agency {agency_id}: status map of {len(updated['status_map'])} codes")


@agency_app.command("set-csv-map")
def agency_set_csv_map(
    agency_id: str,
    mapping: Annotated[str, typer.Argument(help="JSON, inline or a file: canonical field -> the agency's CSV header.")],
    admin_token: AdminToken = None,
    ingest_url: IngestUrl = DEFAULT_INGEST,
) -> None:
    """Set which CSV column holds each field; fields left out keep their default header."""
    try:
        updated = _update(agency_id, {"csv_columns": _json_given(mapping, "CSV columns")}, admin_token, ingest_url)
    except CliError as error:
        raise fail(str(error)) from None
    columns = ", ".join(f"{field}={header}" for field, header in sorted(updated["csv_columns"].items()))
    out.print(f"agency {agency_id}: CSV columns {columns}")


@key_app.command("create")
def key_create(
    agency_id: str,
    label: Annotated[str | None, typer.Option(help="What the key is for, e.g. 'JMS export job'.")] = None,
    admin_token: AdminToken = None,
    ingest_url: IngestUrl = DEFAULT_INGEST,
) -> None:
    """Issue a feed API key. It is printed once (alone on stdout) and cannot be shown again."""
    try:
        with admin_api(ingest_url, admin_token) as api:
            created = api.request(
                "POST", f"/v1/admin/agencies/{agency_id}/keys", json={"label": label} if label else {}, ok=(201,)
            )
    except CliError as error:
        raise fail(str(error)) from None
    err.print(f"API key {created['key_id']} for {agency_id} (shown only now; store it in the feed client):")
    out.print(created["api_key"])


@key_app.command("list")
def key_list(agency_id: str, admin_token: AdminToken = None, ingest_url: IngestUrl = DEFAULT_INGEST) -> None:
    """An agency's keys (ids and labels; never the keys themselves)."""
    try:
        with admin_api(ingest_url, admin_token) as api:
            keys = api.request("GET", f"/v1/admin/agencies/{agency_id}/keys")
    except CliError as error:
        raise fail(str(error)) from None
    table = Table("key id", "label", "created", "revoked", box=None, pad_edge=False)
    for key in keys:
        table.add_row(key["key_id"], key.get("label") or "-", key["created_at"], key.get("revoked_at") or "-")
    out.print(table)


@key_app.command("revoke")
def key_revoke(
    agency_id: str, key_id: str, admin_token: AdminToken = None, ingest_url: IngestUrl = DEFAULT_INGEST
) -> None:
    """Revoke a key: the agency's feed client can no longer push with it."""
    try:
        with admin_api(ingest_url, admin_token) as api:
            api.request("DELETE", f"/v1/admin/agencies/{agency_id}/keys/{key_id}")
    except CliError as error:
        raise fail(str(error)) from None
    out.print(f"revoked key {key_id} of {agency_id}")
