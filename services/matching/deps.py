"""FastAPI dependencies of the matching service: a database connection from the running service's pool."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request

from shared.db import Connection
from shared.runtime import ServiceRuntime


async def connection(request: Request) -> AsyncIterator[Connection]:
    runtime: ServiceRuntime = request.app.state.runtime
    async with runtime.pool.acquire() as acquired:
        yield acquired


Db = Annotated[Connection, Depends(connection)]
