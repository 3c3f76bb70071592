"""The parts of a running ops service that request handlers need, kept on ``app.state.ops``."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from services.ops.auth import SessionSigner
from services.ops.clients import DeliveryClient, IngestClient, MatchingClient
from services.ops.feeds import FeedMonitor
from services.ops.pipeline import PipelineMonitor
from services.ops.settings import OpsSettings
from services.ops.storms import StormMonitor
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
