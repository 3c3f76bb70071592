"""Delivery's operator API as ops calls it: the notices it holds, one notice with its attempts, stopping one."""

from __future__ import annotations

import httpx

from services.ops.clients.base import AdminClient, UpstreamError, parse_items, parse_one, path_part
from services.ops.deliveries.domain import DeliveryNotice, StoppedNotice
from services.ops.settings import OpsSettings
from shared.events import DeliveryStatus


class DeliveryError(UpstreamError):
    service = "delivery"


class DeliveryClient(AdminClient):
    error = DeliveryError

    def __init__(self, settings: OpsSettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(
            settings.delivery_url, settings.delivery_operator_token, settings.delivery_timeout_seconds, transport
        )

    async def pending_notices(self, case: str) -> list[DeliveryNotice]:
        """Notices of a case that delivery holds and has not handed off yet (ops learns of a notice at hand-off)."""
        document = await self._call(
            "GET", "/v1/notifications", params={"case": case, "status": DeliveryStatus.CREATED.value, "limit": 100}
        )
        items = document.get("notifications") if isinstance(document, dict) else None
        return self._parsed(lambda: parse_items(DeliveryNotice, items, "notification"), "notification list")

    async def notice(self, notification_id: str) -> DeliveryNotice:
        document = await self._call("GET", f"/v1/notifications/{path_part(notification_id)}")
        return self._parsed(lambda: parse_one(DeliveryNotice, document, "notification"), "notification")

    async def stop_notification(self, notification_id: str) -> StoppedNotice:
        """Block a notice: delivery makes no further attempt (it answers 200 also for one that had ended)."""
        document = await self._call("POST", f"/v1/notifications/{path_part(notification_id)}/stop")
        return self._parsed(lambda: parse_one(StoppedNotice, document, "notification"), "stop")
