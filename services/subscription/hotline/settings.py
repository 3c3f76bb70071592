"""Settings of the hotline (environment prefix ``SUBSCRIPTION_HOTLINE_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class HotlineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SUBSCRIPTION_HOTLINE_", extra="ignore", frozen=True)

    calls_per_caller_per_hour: int = Field(
        default=10, ge=1, description="Calls answered per caller number and hour; later ones are politely refused."
    )
    stop_pins_per_number_per_day: int = Field(
        default=5,
        ge=1,
        description="PINs a caller number may key in a day to stop calls: a caller ID can be spoofed, and the PIN "
        "must not be guessable from it (5 a day leaves 10,000 PINs out of reach for years).",
    )
