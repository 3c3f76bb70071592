"""Settings of the matching service (environment prefix ``MATCHING_``)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from services.matching.consumers import CONSUMER_GROUP
from shared.settings import OperatorTokenSettings


def default_instance_id() -> str:
    """Unique per process; deployments set ``MATCHING_INSTANCE_ID`` to a stable name (the pod's) instead."""
    return f"{socket.gethostname()}-{os.getpid()}"


class MatchingSettings(OperatorTokenSettings):
    model_config = SettingsConfigDict(env_prefix="MATCHING_", env_nested_delimiter="__", extra="ignore", frozen=True)

    service_name: str = "matching"
    http_port: int = Field(default=8003, ge=0, le=65535)
    public_base_url: str = "http://127.0.0.1:8003"

    instance_id: str = Field(
        default_factory=default_instance_id,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$",
        description="Stable name of this process: a restarted process with the same id fences its crashed "
        "predecessor's open Kafka transaction.",
    )
    consumer_group: str = Field(
        default=CONSUMER_GROUP,
        min_length=1,
        description="Kafka consumer group; its retry and dead-letter topics are named after it.",
    )
    retention_days: int = Field(
        default=90, ge=1, description="How long handled events and decided notices are kept for de-duplication."
    )
    batch_size: int = Field(default=500, ge=1, le=5000, description="Most events handled in one Kafka transaction.")
    reminder_interval_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="How often due reminders of release and court dates are looked for."
    )

    clock_file: Path | None = Field(
        default=None,
        description="Development and tests only: a file holding the ISO date-time matching takes as now (a test "
        "moves it to bring reminders due); absent or empty, the system clock. Refused in production.",
    )

    @model_validator(mode="after")
    def _no_clock_file_in_production(self) -> MatchingSettings:
        if self.environment == "production" and self.clock_file is not None:
            raise ValueError("MATCHING_CLOCK_FILE is for development and tests; production uses the system clock")
        return self

    @model_validator(mode="after")
    def _stable_instance_in_production(self) -> MatchingSettings:
        # A per-process default would give a restarted process a new transactional id, and its crashed
        # predecessor's open transaction would hold back every reader until it timed out.
        if self.environment == "production" and "instance_id" not in self.model_fields_set:
            raise ValueError("MATCHING_INSTANCE_ID must be set in production (a stable name per replica)")
        return self

    @property
    def transactional_id(self) -> str:
        return f"matching-{self.instance_id}"

    @property
    def reminders_transactional_id(self) -> str:
        return f"matching-{self.instance_id}-reminders"
