"""FastAPI dependencies of the ops service: the running service's parts, the session's operator, CSRF and admin
checks. What request handlers need of a running service is kept on ``app.state.ops``."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request

from services.ops.audit.flows import record_action, within_action_limit
from services.ops.auth.domain import CSRF_FIELD, CSRF_HEADER, SESSION_COOKIE, Operator, SessionSigner
from services.ops.auth.flows import load_operator
from services.ops.clients.delivery import DeliveryClient
from services.ops.clients.ingest import IngestClient
from services.ops.clients.matching import MatchingClient
from services.ops.feeds.flows import FeedMonitor
from services.ops.pipeline.flows import PipelineMonitor
from services.ops.settings import OpsSettings
from services.ops.storms.flows import StormMonitor
from shared.runtime import ServiceRuntime


@dataclass
class OpsContext:
    settings: OpsSettings
    runtime: ServiceRuntime
    signer: SessionSigner
    ingest: IngestClient
    delivery: DeliveryClient
    matching: MatchingClient
    pipeline: PipelineMonitor
    storms: StormMonitor
    feeds: FeedMonitor | None = None

    @property
    def feed_monitor(self) -> FeedMonitor:
        if self.feeds is None:
            raise RuntimeError("ops: feed monitor used before start()")
        return self.feeds


def ops_context(request: Request) -> OpsContext:
    context: OpsContext = request.app.state.ops
    return context


Context = Annotated[OpsContext, Depends(ops_context)]


def picked_agency(agency_id: Annotated[str, Query(max_length=100)] = "") -> str:
    """The agency a page is about (``?agency_id=``, trimmed); "" when none is picked yet."""
    return agency_id.strip()


PickedAgency = Annotated[str, Depends(picked_agency)]


class NotAuthenticatedError(Exception):
    """No valid session: HTML requests go to the login page, API requests get 401."""


async def session_operator(request: Request, context: OpsContext) -> Operator | None:
    async with context.runtime.pool.acquire() as connection:
        return await load_operator(connection, context.signer, request.cookies.get(SESSION_COOKIE))


async def current_operator(request: Request, context: Context) -> Operator:
    operator = await session_operator(request, context)
    if operator is None:
        raise NotAuthenticatedError
    return operator


CurrentOperator = Annotated[Operator, Depends(current_operator)]


def require_admin(operator: Operator) -> None:
    if not operator.is_admin:
        raise HTTPException(status_code=403, detail="only admins may do this; you are signed in as a viewer")


async def require_csrf(request: Request, operator: Operator) -> None:
    """A POST must carry the session's CSRF token (form field or header); SameSite=Strict is the second line."""
    token = request.headers.get(CSRF_HEADER)
    if token is None:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        token = value if isinstance(value, str) else None
    if token is None or not secrets.compare_digest(token, operator.csrf_token):
        raise HTTPException(status_code=403, detail="missing or invalid CSRF token; reload the page and try again")


async def admin_action(request: Request, context: OpsContext, operator: Operator, action: str, target: str) -> None:
    """The CSRF token is checked; viewers are refused and admins rate-limited (each refusal audited)."""
    await require_csrf(request, operator)
    settings = context.settings
    if not operator.is_admin:
        await record_action(context.runtime.pool, operator.username, action, target, outcome="forbidden")
    require_admin(operator)
    within = await within_action_limit(
        context.runtime.pool,
        operator.username,
        action,
        target,
        limit=settings.admin_action_limit,
        window_seconds=settings.admin_action_window_seconds,
    )
    if within:
        return
    raise HTTPException(
        status_code=429,
        detail=f"too many admin actions: at most {settings.admin_action_limit} in"
        f" {settings.admin_action_window_seconds:g} s; wait a moment and try again",
    )
