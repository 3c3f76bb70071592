"""The operators' delivery history (bearer token): notifications with every attempt, and blocking a notice."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, status

from services.delivery.deps import MAX_FIELD, ApiContext, operator
from services.delivery.schemas import NotificationList, NotificationView
from services.delivery.store import attempts, notifications
from shared.events import DeliveryStatus
from shared.vocabulary import normalise_identifier


def history_router(context: ApiContext) -> APIRouter:
    router = APIRouter(prefix="/v1/notifications", tags=["history"], dependencies=[Depends(operator(context))])

    @router.get("/{notification_id}", response_model=NotificationView, summary="One notification and every attempt")
    async def get_notification(notification_id: str) -> NotificationView:
        async with context.runtime.pool.acquire() as connection:
            row = await notifications.get_notification(connection, notification_id)
            if row is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, "no such notification")
            found = await attempts.attempts_of(connection, [notification_id])
        return NotificationView.of(row, found[notification_id])

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
            rows = await notifications.search_notifications(
                connection,
                subscription_id=subscription_id,
                agency_id=agency_id,
                case=normalise_identifier(case) if case else None,
                since=since,
                until=until,
                status=status_filter.value if status_filter else None,
                limit=limit,
            )
            found = await attempts.attempts_of(connection, [row.notification_id for row in rows])
        return NotificationList(notifications=[NotificationView.of(row, found[row.notification_id]) for row in rows])

    @router.post("/{notification_id}/stop", response_model=NotificationView, summary="Block further attempts")
    async def stop_notification(notification_id: str) -> NotificationView:
        async with context.runtime.pool.acquire() as connection, connection.transaction():
            row = await context.bookkeeper.stop(connection, notification_id)
            if row is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, "no such notification")
            found = await attempts.attempts_of(connection, [notification_id])
        return NotificationView.of(row, found[notification_id])

    return router
