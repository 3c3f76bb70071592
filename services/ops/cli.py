"""Operator accounts from the command line: ``python -m services.ops.cli create-operator --username x --role admin``."""

from __future__ import annotations

import asyncio
import os
from typing import Annotated

import typer

from services.ops.auth.domain import Role, check_password_strength
from services.ops.auth.flows import add_operator
from services.ops.settings import OpsSettings
from shared.db import apply_migrations, create_pool
from shared.serve import load_settings

app = typer.Typer(help="Custody Watch ops: operator accounts.", no_args_is_help=True)

PASSWORD_VARIABLE = "OPS_NEW_OPERATOR_PASSWORD"  # noqa: S105 - a variable name, not a password


async def _create(settings: OpsSettings, username: str, password: str, role: Role) -> bool:
    pool = await create_pool(settings.database_url, min_size=1, max_size=1)
    try:
        await apply_migrations(pool, ["shared", "services.ops"])
        async with pool.acquire() as connection, connection.transaction():
            return await add_operator(connection, username, password, role, by="cli", detail={"role": role.value})
    finally:
        await pool.close()


@app.callback()
def main() -> None:
    """Operator accounts of the ops dashboard."""


@app.command("create-operator")
def create_operator(
    username: Annotated[str, typer.Option(help="Login name (letters, digits, . _ -)")],
    role: Annotated[Role, typer.Option(help="viewer looks; admin also replays dead letters and pauses agencies")],
) -> None:
    """Create an operator; the password is read from OPS_NEW_OPERATOR_PASSWORD or prompted for."""
    if not username or len(username) > 100 or not all(c.isalnum() or c in "._-" for c in username):
        raise typer.BadParameter("use 1-100 letters, digits, '.', '_' or '-'", param_hint="--username")
    password = os.environ.get(PASSWORD_VARIABLE) or typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        check_password_strength(password)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="password") from None
    settings = load_settings(OpsSettings)
    if not asyncio.run(_create(settings, username, password, role)):
        typer.echo(f"operator {username!r} already exists", err=True)
        raise typer.Exit(code=1)
    typer.echo(f"created {role.value} {username}")


if __name__ == "__main__":
    app()
