"""HTTP API: provider status callbacks, acknowledgement links and the operators' delivery history."""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

import jinja2
from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.delivery import metrics, store
from services.delivery.dispatcher import Clock
from services.delivery.domain import is_progress, twilio_receipt
from services.delivery.flows import Bookkeeper
from services.delivery.links import AcknowledgementTokens
from services.delivery.rendering import BRAND, TEMPLATE_DIRECTORY
from services.delivery.schemas import CallbackResult, NotificationList, NotificationView
from services.delivery.settings import DeliverySettings
from shared.db import Connection
from shared.events import DeliveryStatus
from shared.runtime import ServiceRuntime
from shared.twilio import signature_is_valid
from shared.vocabulary import Language, normalise_identifier

log = logging.getLogger(__name__)

MAX_FIELD = 256
OPERATOR_BEARER = HTTPBearer(auto_error=False)


@dataclass(frozen=True)
class ApiContext:
    settings: DeliverySettings
    runtime: ServiceRuntime
    bookkeeper: Bookkeeper
    tokens: AcknowledgementTokens
    clock: Clock
    sms_route: str
    """The name in the callback URLs we hand out: one provider's, or the failover group's."""


async def receipt_attempt(
    connection: Connection, *, reference: str | None, message_sid: str, provider: str, signer: str
) -> store.AttemptRow:
    """The attempt a signed receipt is about, or the HTTP error that refuses it."""
    attempt_id = reference or await store.find_attempt_by_provider_message(connection, message_sid)
    attempt = await store.get_attempt(connection, attempt_id) if attempt_id else None
    if attempt is None:
        metrics.CALLBACKS.labels(provider, "unknown").inc()
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no attempt with this reference or MessageSid")
    if attempt.provider is not None and attempt.provider != signer:
        metrics.CALLBACKS.labels(provider, "forged").inc()
        raise HTTPException(status.HTTP_403_FORBIDDEN, "signed by another provider than the sender")
    if attempt.provider_message_id not in (None, message_sid):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "MessageSid does not match the attempt")
    return attempt


def already_known(attempt: store.AttemptRow, reported: DeliveryStatus) -> bool:
    """A receipt that changes nothing: the hand-off is recorded and the attempt is already at (or past) the status.

    Attempt statuses only move forward, so this unlocked read settles it without a write transaction (most "sent"
    callbacks arrive after the dispatcher's own bookkeeping).
    """
    return (
        attempt.handed_off_at is not None
        and attempt.provider_message_id is not None
        and not is_progress(attempt.status, reported)
    )


def callbacks_router(context: ApiContext) -> APIRouter:
    router = APIRouter(prefix="/v1/callbacks", tags=["callbacks"])
    settings = context.settings

    def signers(provider: str) -> dict[str, str]:
        """Providers (name → auth token) whose signature a callback to this path may carry."""
        configured = {p.name: p.auth_token for p in settings.sms_providers}
        if provider in configured:
            return {provider: configured[provider]}
        if provider == context.sms_route:
            return configured  # a failover group: whichever provider sent the message signs its receipts
        return {}

    @router.post(
        "/sms/{provider}",
        response_model=CallbackResult,
        summary="Twilio-shaped status callback (X-Twilio-Signature checked)",
        responses={400: {"description": "Malformed"}, 403: {"description": "Bad signature"}, 404: {}},
    )
    async def sms_status_callback(provider: str, request: Request) -> CallbackResult:
        candidates = signers(provider)
        if not candidates:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown SMS provider {provider!r}")
        try:
            form = await request.form()
        except Exception as error:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "body is not a form") from error
        params = {key: value for key, value in form.items() if isinstance(value, str)}
        if len(params) != len(form):
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "file uploads are not accepted")
        url = settings.public_base_url.rstrip("/") + request.url.path
        if request.url.query:
            url += "?" + request.url.query
        signature = request.headers.get("X-Twilio-Signature")
        signer = next(
            (name for name, token in candidates.items() if signature_is_valid(token, url, params, signature)), None
        )
        if signer is None:
            metrics.CALLBACKS.labels(provider, "forged").inc()
            log.warning("refused a status callback with a bad signature on %s", provider)
            raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid X-Twilio-Signature")
        message_sid = params.get("MessageSid") or params.get("SmsSid")
        message_status = params.get("MessageStatus") or params.get("SmsStatus")
        if not message_sid or not message_status or len(message_sid) > MAX_FIELD:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "MessageSid and MessageStatus are required")
        receipt = twilio_receipt(message_status, params.get("ErrorCode"))
        if receipt is None:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, f"unknown MessageStatus {message_status[:40]!r}")
        reference = request.query_params.get("ref")
        now = context.clock()
        async with context.runtime.pool.acquire() as connection:
            attempt = await receipt_attempt(
                connection, reference=reference, message_sid=message_sid, provider=provider, signer=signer
            )
            attempt_id = attempt.attempt_id
            if already_known(attempt, receipt.status):
                metrics.CALLBACKS.labels(provider, "repeated").inc()
                return CallbackResult(attempt_id=attempt_id, status=attempt.status)
            async with connection.transaction():
                await context.bookkeeper.apply_receipt(
                    connection,
                    attempt_id,
                    receipt,
                    now=now,
                    provider=signer,
                    provider_message_id=message_sid,
                )
                current = await store.get_attempt(connection, attempt_id)
        metrics.CALLBACKS.labels(provider, "applied").inc()
        return CallbackResult(attempt_id=attempt_id, status=current.status if current else receipt.status)

    return router


_PAGES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATE_DIRECTORY), undefined=jinja2.StrictUndefined, autoescape=True
)


def _page(name: str, language: Language, status_code: int = 200, **context: str) -> HTMLResponse:
    """One of the acknowledgement pages (``templates/pages/<language>/``) in the notice's language."""
    document = _PAGES.get_template(f"pages/{language.value}/{name}.html").render(
        lang=language.value, brand=BRAND, **context
    )
    return HTMLResponse(document, status_code=status_code, headers={"Cache-Control": "no-store"})


def acknowledgement_router(context: ApiContext) -> APIRouter:
    router = APIRouter(prefix="/v1/ack", tags=["acknowledgement"])

    def asked_language(request: Request) -> Language | None:
        asked = request.query_params.get("lang")
        return Language(asked) if asked in set(Language) else None

    async def notice_language(request: Request, notification_id: str | None) -> Language:
        asked = asked_language(request)
        if asked is not None or notification_id is None:
            return asked or Language.ENGLISH
        async with context.runtime.pool.acquire() as connection:
            row = await store.get_notification(connection, notification_id)
        return row.request.language if row is not None else Language.ENGLISH

    @router.get("/{token}", response_class=HTMLResponse, summary="Confirmation page of an acknowledgement link")
    async def confirm_page(token: str, request: Request) -> HTMLResponse:
        # GET only shows a button: link scanners that prefetch URLs must not silence an urgent notice.
        notification_id = context.tokens.notification_id(token)
        language = await notice_language(request, notification_id)
        if notification_id is None:
            return _page("problem", language, status.HTTP_404_NOT_FOUND)
        action = context.tokens.url(context.settings.public_base_url, notification_id)
        return _page("confirm", language, action=action)

    @router.post("/{token}", response_class=HTMLResponse, summary="Acknowledge an urgent notice: its repeats stop")
    async def acknowledge(token: str, request: Request) -> HTMLResponse:
        notification_id = context.tokens.notification_id(token)
        if notification_id is None:
            return _page("problem", asked_language(request) or Language.ENGLISH, status.HTTP_404_NOT_FOUND)
        async with context.runtime.pool.acquire() as connection, connection.transaction():
            row = await context.bookkeeper.acknowledge(connection, notification_id, now=context.clock(), publish=True)
        if row is None:
            return _page("problem", asked_language(request) or Language.ENGLISH, status.HTTP_404_NOT_FOUND)
        return _page("thanks", row.request.language)

    return router


def history_router(context: ApiContext) -> APIRouter:
    def operator(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(OPERATOR_BEARER)],
    ) -> None:
        given = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(given.encode(), context.settings.operator_token.encode()):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "operator bearer token required", headers={"WWW-Authenticate": "Bearer"}
            )

    router = APIRouter(prefix="/v1/notifications", tags=["history"], dependencies=[Depends(operator)])

    @router.get("/{notification_id}", response_model=NotificationView, summary="One notification and every attempt")
    async def get_notification(notification_id: str) -> NotificationView:
        async with context.runtime.pool.acquire() as connection:
            row = await store.get_notification(connection, notification_id)
            if row is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, "no such notification")
            attempts = await store.attempts_of(connection, [notification_id])
        return NotificationView.of(row, attempts[notification_id])

    @router.get("", response_model=NotificationList, summary="Notifications by subscription, agency, case, time")
    async def list_notifications(  # noqa: PLR0917 - one parameter per query filter
        subscription_id: Annotated[str | None, Query(max_length=MAX_FIELD)] = None,
        agency_id: Annotated[str | None, Query(max_length=MAX_FIELD)] = None,
        case: Annotated[str | None, Query(max_length=64, description="A case/booking/person number")] = None,
        since: datetime | None = None,
        until: datetime | None = None,
        status_filter: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> NotificationList:
        for name, moment in (("since", since), ("until", until)):
            if moment is not None and moment.tzinfo is None:
                raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, f"{name} needs a time zone offset")
        async with context.runtime.pool.acquire() as connection:
            rows = await store.search_notifications(
                connection,
                subscription_id=subscription_id,
                agency_id=agency_id,
                case=normalise_identifier(case) if case else None,
                since=since,
                until=until,
                status=status_filter.value if status_filter else None,
                limit=limit,
            )
            attempts = await store.attempts_of(connection, [row.notification_id for row in rows])
        return NotificationList(notifications=[NotificationView.of(row, attempts[row.notification_id]) for row in rows])

    @router.post("/{notification_id}/stop", response_model=NotificationView, summary="Block further attempts")
    async def stop_notification(notification_id: str) -> NotificationView:
        async with context.runtime.pool.acquire() as connection, connection.transaction():
            row = await context.bookkeeper.stop(connection, notification_id)
            if row is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, "no such notification")
            attempts = await store.attempts_of(connection, [notification_id])
        return NotificationView.of(row, attempts[notification_id])

    return router
