"""Held storms: poll ingest's storm holds so the dashboard shows a new one within seconds, even on an open page;
record an admin's decision."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.ops import metrics
from services.ops.audit.flows import record_action
from services.ops.clients.ingest import IngestClient, IngestError
from services.ops.schemas import StormsSection
from services.ops.settings import OpsSettings
from services.ops.storms.domain import HoldState, StormHold, split_holds

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StormSnapshot:
    holding: list[StormHold] = field(default_factory=list)
    decided: list[StormHold] = field(default_factory=list)
    error: str | None = None
    checked_at: datetime | None = None


class StormMonitor:
    """The last answer of ingest's storm-holds API; an error keeps the last holds shown, with the error above."""

    def __init__(self, settings: OpsSettings, client: IngestClient) -> None:
        self._settings = settings
        self._client = client
        self._announced: set[str] = set()
        self.snapshot = StormSnapshot()

    async def run(self) -> None:
        while True:
            await self.check_once()
            await asyncio.sleep(self._settings.storm_poll_interval_seconds)

    async def check_once(self) -> StormSnapshot:
        try:
            holding = await self._client.storm_holds(HoldState.HOLDING)
            recent = await self._client.storm_holds()
        except IngestError as error:
            metrics.STORM_HOLD_ERRORS.inc()
            if self.snapshot.error != str(error):
                log.warning("storm holds unavailable: %s", error)
            self.snapshot = StormSnapshot(
                holding=self.snapshot.holding,
                decided=self.snapshot.decided,
                error=str(error),
                checked_at=self.snapshot.checked_at,
            )
            return self.snapshot
        open_holds, decided = split_holds(holding, recent, self._settings.decided_storms_shown)
        self.snapshot = StormSnapshot(holding=open_holds, decided=decided, checked_at=datetime.now(UTC))
        self._publish_metrics(open_holds)
        return self.snapshot

    def _publish_metrics(self, open_holds: list[StormHold]) -> None:
        metrics.STORM_HOLDS_OPEN.set(len(open_holds))
        metrics.STORM_HELD_CHANGES.clear()
        for hold in open_holds:
            metrics.STORM_HELD_CHANGES.labels(hold.agency_id).inc(hold.held_changes)
            if hold.hold_id not in self._announced:
                log.warning(
                    "storm hold %s of agency %s: %d changes held (%s)",
                    hold.hold_id,
                    hold.agency_id,
                    hold.held_changes,
                    hold.trigger,
                )
        self._announced = {hold.hold_id for hold in open_holds}  # logged once per hold, forgotten once decided


def storms_section(monitor: StormMonitor) -> StormsSection:
    snapshot = monitor.snapshot
    return StormsSection(
        holding=snapshot.holding, decided=snapshot.decided, error=snapshot.error, checked_at=snapshot.checked_at
    )


async def record_decision(
    pool: asyncpg.Pool,
    monitor: StormMonitor,
    username: str,
    action: str,
    hold: StormHold,
    *,
    reason: str | None = None,
) -> None:
    """Audit a storm decision and refresh the held storms at once, so the page shows it decided."""
    detail: dict[str, Any] = {
        "agency_id": hold.agency_id,
        "held_changes": hold.held_changes,
        "urgent_changes": hold.urgent_changes,
        "state": hold.state.value,
    }
    if reason is not None:
        detail["reason"] = reason
    await record_action(pool, username, action, hold.hold_id, outcome="ok", detail=detail)
    await monitor.check_once()
