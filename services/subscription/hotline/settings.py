"""Settings of the hotline (environment prefix ``SUBSCRIPTION_HOTLINE_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class HotlineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SUBSCRIPTION_HOTLINE_", extra="ignore", frozen=True)

    calls_per_caller_per_hour: int = Field(
        default=10, ge=1, description="Calls answered per caller number and hour; later ones are politely refused."
    )
