"""Acknowledgement links: GET shows a confirmation page, POST acknowledges the urgent notice (its repeats stop)."""

from __future__ import annotations

from fastapi import APIRouter, Request, status
from fastapi.responses import HTMLResponse

from services.delivery.deps import ApiContext
from services.delivery.store import notifications
from shared.vocabulary import Language


def acknowledgement_router(context: ApiContext) -> APIRouter:
    router = APIRouter(prefix="/v1/ack", tags=["acknowledgement"])

    def page(name: str, language: Language, status_code: int = 200, **values: str) -> HTMLResponse:
        document = context.renderer.render_page(name, language, **values)
        return HTMLResponse(document, status_code=status_code, headers={"Cache-Control": "no-store"})

    def asked_language(request: Request) -> Language | None:
        asked = request.query_params.get("lang")
        return Language(asked) if asked in set(Language) else None

    async def notice_language(request: Request, notification_id: str | None) -> Language:
        asked = asked_language(request)
        if asked is not None or notification_id is None:
            return asked or Language.ENGLISH
        async with context.runtime.pool.acquire() as connection:
            row = await notifications.get_notification(connection, notification_id)
        return row.request.language if row is not None else Language.ENGLISH

    @router.get("/{token}", response_class=HTMLResponse, summary="Confirmation page of an acknowledgement link")
    async def confirm_page(token: str, request: Request) -> HTMLResponse:
        # GET only shows a button: link scanners that prefetch URLs must not silence an urgent notice.
        notification_id = context.tokens.notification_id(token)
        language = await notice_language(request, notification_id)
        if notification_id is None:
            return page("problem", language, status.HTTP_404_NOT_FOUND)
        action = context.tokens.url(context.settings.public_base_url, notification_id)
        return page("confirm", language, action=action)

    @router.post("/{token}", response_class=HTMLResponse, summary="Acknowledge an urgent notice: its repeats stop")
    async def acknowledge(token: str, request: Request) -> HTMLResponse:
        notification_id = context.tokens.notification_id(token)
        if notification_id is None:
            return page("problem", asked_language(request) or Language.ENGLISH, status.HTTP_404_NOT_FOUND)
        async with context.runtime.pool.acquire() as connection, connection.transaction():
            row = await context.bookkeeper.acknowledge(connection, notification_id, now=context.clock(), publish=True)
        if row is None:
            return page("problem", asked_language(request) or Language.ENGLISH, status.HTTP_404_NOT_FOUND)
        return page("thanks", row.request.language)

    return router
