"""Replaying a dead letter to its original topic (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from services.ops import metrics
from services.ops.audit.flows import record_action
from services.ops.deps import Context, CurrentOperator, admin_action
from services.ops.pipeline.domain import AlreadyReplayedError, ReplayNotFoundError, ReplayRefusedError
from services.ops.rendering import result

actions = APIRouter(prefix="/actions", tags=["actions"])

ACTION = "replay_dead_letter"
REFUSAL_STATUS: dict[type[Exception], int] = {
    ReplayRefusedError: 400,
    ReplayNotFoundError: 404,
    AlreadyReplayedError: 409,
}


@actions.post("/replay", summary="Re-publish one dead letter to its original topic (admin)")
async def replay(
    request: Request,
    context: Context,
    operator: CurrentOperator,
    *,
    topic: Annotated[str, Form(max_length=300)],
    partition: Annotated[int, Form(ge=0)],
    offset: Annotated[int, Form(ge=0)],
) -> Response:
    target = f"{topic}:{partition}:{offset}"
    await admin_action(request, context, operator, ACTION, target)
    try:
        sent_to = await context.pipeline.replay(
            context.runtime.pool,
            context.runtime.producer,
            dlq_topic=topic,
            partition=partition,
            offset=offset,
            username=operator.username,
        )
    except (ReplayRefusedError, ReplayNotFoundError, AlreadyReplayedError) as error:
        await record_action(
            context.runtime.pool, operator.username, ACTION, target, outcome="refused", detail={"why": str(error)}
        )
        return result(request, REFUSAL_STATUS[type(error)], f"Not replayed: {error}")
    metrics.ADMIN_ACTIONS.labels(ACTION, "ok").inc()
    return result(request, 200, f"Replayed {topic} partition {partition} offset {offset} to {sent_to}.")
