"""Operator CLI working directly on the ingest database (``INGEST_DATABASE_URL``).

Profile changes go through the outbox like the admin API's, so the running service publishes them.

    python -m services.ingest.cli create-agency county-jail "County Jail" America/Chicago
    python -m services.ingest.cli create-key county-jail --label "JMS export"
    python -m services.ingest.cli revoke-key county-jail 0123456789ab
    python -m services.ingest.cli set-status-map county-jail status-map.json
    python -m services.ingest.cli set-csv-map county-jail columns.json
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError

from services.ingest import apikeys, flows, store
from services.ingest.domain import DEFAULT_CSV_COLUMNS, DEFAULT_STATUS_MAP
from services.ingest.schemas import AgencyCreate, AgencyUpdate
from services.ingest.settings import IngestSettings
from shared.db import Connection, apply_migrations, create_pool
from shared.serve import load_settings

app = typer.Typer(help="Manage ingest agencies and API keys.", no_args_is_help=True)
ResultT = TypeVar("ResultT")


def _run(action: Callable[[Connection, IngestSettings], Awaitable[ResultT]]) -> ResultT:
    settings = load_settings(IngestSettings)

    async def main() -> ResultT:
        pool = await create_pool(settings.database_url, min_size=1, max_size=2)
        try:
            await apply_migrations(pool, ["shared", "services.ingest"])
            async with pool.acquire() as connection:
                return await action(connection, settings)
        finally:
            await pool.close()

    return asyncio.run(main())


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=1)


def _read_json(source: str) -> Any:
    """A JSON document given inline or as a file path."""
    text = Path(source).read_text() if Path(source).is_file() else source
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise _fail(f"not valid JSON: {error}") from None


def _validated(model: type[Any], values: dict[str, Any]) -> Any:
    try:
        return model.model_validate(values)
    except ValidationError as error:
        raise _fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())) from None


@app.command("create-agency")
def create_agency(  # noqa: PLR0917 - typer maps parameters to arguments and options
    agency_id: str,
    name: str,
    timezone: str,
    expected_feed_interval_minutes: Annotated[int, typer.Option(help="Feed silence alert threshold")] = 60,
    contact_phone: str | None = None,
    victim_services_phone: str | None = None,
    victim_services_url: str | None = None,
) -> None:
    """Create an agency (with the default status map and CSV columns) and publish its profile."""
    body: AgencyCreate = _validated(
        AgencyCreate,
        {
            "agency_id": agency_id,
            "name": name,
            "timezone": timezone,
            "expected_feed_interval_minutes": expected_feed_interval_minutes,
            "contact_phone": contact_phone,
            "victim_services_phone": victim_services_phone,
            "victim_services_url": victim_services_url,
        },
    )
    values = body.model_dump(mode="json", exclude_none=True) | {
        "status_map": DEFAULT_STATUS_MAP,
        "csv_columns": DEFAULT_CSV_COLUMNS,
    }
    agency = _run(lambda connection, settings: flows.create_agency(connection, settings, values))
    if agency is None:
        raise _fail(f"agency {agency_id!r} already exists")
    typer.echo(f"created agency {agency.agency_id}")


@app.command("create-key")
def create_key(agency_id: str, label: Annotated[str | None, typer.Option()] = None) -> None:
    """Issue an API key; it is printed once and never stored in clear."""
    new_key = apikeys.generate_key()

    async def issue(connection: Connection, _: IngestSettings) -> bool:
        if await store.get_agency(connection, agency_id) is None:
            return False
        await store.insert_key(connection, new_key.key_id, agency_id, new_key.key_hash, label)
        return True

    if not _run(issue):
        raise _fail(f"unknown agency {agency_id!r}")
    typer.echo(f"key id:  {new_key.key_id}")
    typer.echo(f"API key: {new_key.token}")


@app.command("revoke-key")
def revoke_key(agency_id: str, key_id: str) -> None:
    """Revoke one of the agency's API keys."""
    if not _run(lambda connection, _: store.revoke_key(connection, agency_id, key_id)):
        raise _fail(f"agency {agency_id!r} has no key {key_id!r}")
    typer.echo(f"revoked key {key_id}")


def _update(agency_id: str, changes: dict[str, Any]) -> None:
    update: AgencyUpdate = _validated(AgencyUpdate, changes)
    values = {name: getattr(update, name) for name in changes}
    agency = _run(lambda connection, settings: flows.update_agency(connection, settings, agency_id, values))
    if agency is None:
        raise _fail(f"unknown agency {agency_id!r}")
    typer.echo(f"updated agency {agency_id}")


@app.command("set-status-map")
def set_status_map(
    agency_id: str, mapping: Annotated[str, typer.Argument(help="JSON (inline or a file): code -> {status, ...}")]
) -> None:
    """Replace the agency's status map (its codes -> canonical statuses and release reasons)."""
    _update(agency_id, {"status_map": _read_json(mapping)})


@app.command("set-csv-map")
def set_csv_map(
    agency_id: str, mapping: Annotated[str, typer.Argument(help="JSON (inline or a file): field -> column header")]
) -> None:
    """Set which CSV column holds each field (unmapped fields keep their default header)."""
    _update(agency_id, {"csv_columns": _read_json(mapping)})


if __name__ == "__main__":
    app()
