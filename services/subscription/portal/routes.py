"""The portal's pages: start, find a case, register (contact, choices, check your answers), enter codes, manage.
Every change is a POST form with a CSRF token answered by a redirect (POST-redirect-GET); GET never changes state.
Each route calls the subscription service, exactly as the JSON API does."""

from __future__ import annotations

from fastapi import APIRouter

from services.subscription.flows.context import Context
from services.subscription.portal.find import find_router
from services.subscription.portal.manage import manage_router
from services.subscription.portal.register import register_router
from services.subscription.portal.web import Pages


def create_portal_router(context: Context, pages: Pages) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    for part in (find_router, register_router, manage_router):
        router.include_router(part(context, pages))
    return router
