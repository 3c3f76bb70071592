"""``custody-watch``: push feeds, manage agencies and their keys, follow deliveries, over the public HTTP APIs.

Every URL and credential is an option or an environment variable (``CUSTODY_WATCH_INGEST_URL``,
``CUSTODY_WATCH_API_KEY``, ``CUSTODY_WATCH_ADMIN_TOKEN``, ``CUSTODY_WATCH_DELIVERY_URL``,
``CUSTODY_WATCH_OPERATOR_TOKEN``); the defaults are the ports ``make run`` prefers. Results go to stdout, progress and
explanations to stderr, so ``KEY=$(custody-watch agency key create ...)`` captures just the key.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from shared.cli import feeds, output
from shared.cli.client import Api, CliError

EXIT_REJECTED = 2
"""``feed push`` got through, but the service rejected some records: a script can tell this from a failure (1)."""

app = typer.Typer(
    help="Custody Watch for agencies and operators: push feeds, manage agencies and keys, follow deliveries. "
    "URLs and credentials are options or CUSTODY_WATCH_* environment variables (see each command's --help).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
feed_app = typer.Typer(help="An agency's custody feed.", no_args_is_help=True)
agency_app = typer.Typer(help="Agencies and their feed API keys (admin token).", no_args_is_help=True)
key_app = typer.Typer(help="An agency's feed API keys.", no_args_is_help=True)
delivery_app = typer.Typer(help="What the delivery service sent (operator token).", no_args_is_help=True)
app.add_typer(feed_app, name="feed")
app.add_typer(agency_app, name="agency")
agency_app.add_typer(key_app, name="key")
app.add_typer(delivery_app, name="delivery")

# No markup: feed data (reasons, ids) may contain square brackets that rich would otherwise read as styles.
out = Console(highlight=False, soft_wrap=True, markup=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)

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
DEFAULT_INGEST = "http://127.0.0.1:8001"
DEFAULT_DELIVERY = "http://127.0.0.1:8004"


def feed_api(url: str, api_key: str | None) -> Api:
    return Api(url, api_key, credential="API key", setting="--api-key or CUSTODY_WATCH_API_KEY")


def admin_api(url: str, token: str | None) -> Api:
    return Api(url, token, credential="admin token", setting="--admin-token or CUSTODY_WATCH_ADMIN_TOKEN")


def operator_api(url: str, token: str | None) -> Api:
    return Api(url, token, credential="operator token", setting="--operator-token or CUSTODY_WATCH_OPERATOR_TOKEN")


def fail(message: str) -> typer.Exit:
    err.print(Text.assemble(("error:", "bold red"), " ", message))
    return typer.Exit(1)


def progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )


# --- feed ---------------------------------------------------------------------------------------------------------


def push_json(api: Api, agency_id: str, path: Path, batch_size: int) -> feeds.PushSummary:
    records = feeds.read_records(path)
    digest = feeds.file_sha256(path)
    summary = feeds.PushSummary()
    with progress() as bar:
        task = bar.add_task(f"pushing {path.name}", total=len(records))
        cut = list(feeds.batches(records, batch_size))
        for number, (offset, batch) in enumerate(cut):
            try:
                answer = api.request(
                    "POST",
                    f"/v1/agencies/{agency_id}/custody-events",
                    json={"records": batch},
                    headers={"Idempotency-Key": feeds.idempotency_key(digest, batch_size, number)},
                    ok=(200,),
                    retry=True,
                )
            except CliError as error:
                hint = "; try a smaller --batch-size" if "(413)" in str(error) else ""
                if number == 0:
                    raise CliError(f"{error}{hint}") from None
                raise CliError(
                    f"batch {number + 1} of {len(cut)} (records {offset}-{offset + len(batch) - 1}): "
                    f"{str(error).rstrip('.')}{hint}. The {number} batch(es) before it went through; running the same "
                    "command again is safe: batches already taken are answered, not applied twice."
                ) from None
            summary.add_batch(offset, answer)
            bar.advance(task, len(batch))
    return summary


def push_csv(api: Api, agency_id: str, path: Path, poll_interval: float, timeout: float) -> feeds.PushSummary:
    rows = feeds.count_csv_rows(path)
    size = path.stat().st_size
    with progress() as bar:
        upload = bar.add_task(f"uploading {path.name} (bytes)", total=size)

        def chunks() -> Iterator[bytes]:
            for chunk in feeds.file_chunks(path):
                yield chunk
                bar.advance(upload, len(chunk))

        job = api.request(
            "POST",
            f"/v1/agencies/{agency_id}/custody-files",
            content=chunks(),
            headers={"Content-Type": "text/csv", "Content-Length": str(size)},
            ok=(202,),
        )
        processing = bar.add_task("processing rows", total=rows)
        deadline = time.monotonic() + timeout
        while True:
            job = api.request(
                "GET",
                f"/v1/agencies/{agency_id}/custody-files/{job['job_id']}",
                params={"errors_limit": 10},
                retry=True,
            )
            bar.update(processing, completed=min(int(job.get("rows_processed", 0)), rows))
            if job.get("status") in ("processed", "failed"):
                break
            if time.monotonic() > deadline:
                raise CliError(
                    f"file job {job['job_id']} still {job.get('status')} after {timeout:.0f} s; "
                    f"follow it at GET /v1/agencies/{agency_id}/custody-files/{job['job_id']}"
                )
            time.sleep(poll_interval)
        if job.get("status") == "processed":
            bar.update(processing, total=max(rows, int(job.get("rows_processed", 0))), completed=job["rows_processed"])
    if job.get("status") == "failed":
        raise CliError(f"the service could not process the file: {job.get('error')}")
    summary = feeds.PushSummary()
    summary.add_job(job)
    return summary


@feed_app.command("push")
def feed_push(
    agency_id: Annotated[str, typer.Argument(help="The agency whose feed this is.")],
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="A .json or a .csv feed file.")
    ],
    *,
    batch_size: Annotated[
        int, typer.Option(min=1, max=feeds.MAX_BATCH_SIZE, help="Records per request (JSON files).")
    ] = 1_000,
    api_key: ApiKey = None,
    ingest_url: IngestUrl = DEFAULT_INGEST,
    poll_interval: Annotated[float, typer.Option(min=0.05, help="Seconds between checks of a CSV job.")] = 0.5,
    timeout: Annotated[float, typer.Option(min=1, help="Give up waiting for a CSV job after this long.")] = 3600,
) -> None:
    """Push a feed file. JSON (an array, or {"records": [...]}) goes in batches, each with an Idempotency-Key made
    from the file's hash and the batch number, so running the same command again after a failure is safe. CSV is
    streamed to the file endpoint and followed until processed. Exits 1 on failure, 2 if records were rejected."""
    csv = feeds.is_csv(file)
    try:
        with feed_api(ingest_url, api_key) as api:
            summary = (
                push_csv(api, agency_id, file, poll_interval, timeout)
                if csv
                else push_json(api, agency_id, file, batch_size)
            )
    except (CliError, feeds.FeedFileError) as error:
        raise fail(str(error)) from None
    out.print(f"{file.name}: {summary.total} records · {output.summary_line(summary)}")
    for line in output.rejection_lines(summary, csv=csv):
        out.print(line)
    if summary.rejected:
        raise typer.Exit(EXIT_REJECTED)


# --- agency -------------------------------------------------------------------------------------------------------


def _json_file(path: Path | None, what: str) -> Any:
    if path is None:
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CliError(f"cannot read the {what} from {path}: {error}") from None


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


# --- delivery -----------------------------------------------------------------------------------------------------


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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
