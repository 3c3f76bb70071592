"""Settings of the ops dashboard (environment prefix ``OPS_``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import DEV_OPERATOR_TOKEN, ServiceSettings

# Usable only in development and test; the service refuses to start in production with any of them.
DEV_SESSION_SECRET = "ops-dev-session-secret-not-for-production-use"  # noqa: S105 - refused in production
DEV_INGEST_ADMIN_TOKEN = "ingest-dev-admin-token"  # noqa: S105 - refused in production
DEV_BOOTSTRAP_ADMIN_PASSWORD = "ops-dev-admin-password"  # noqa: S105 - refused in production
DEV_DELIVERY_OPERATOR_TOKEN = "delivery-dev-operator-token"  # noqa: S105 - delivery's own dev default; refused too

DEFAULT_CONSUMER_GROUPS = ["subscription", "matching", "delivery", "ops"]  # ingest only produces


class LoginThrottle(BaseModel):
    """Failed logins slow down one (client address, username) pair, never a username from everywhere."""

    free_failures: int = Field(default=5, ge=1, description="Failures of a pair before each further try waits.")
    base_delay_seconds: float = Field(default=1.0, gt=0, description="The first wait; it doubles with each failure.")
    max_delay_seconds: float = Field(default=900.0, gt=0, description="No pair ever waits longer than this.")
    global_failure_cap: int = Field(
        default=200,
        ge=1,
        description="Failed logins of all clients per window, past which a failing pair waits the most.",
    )
    window_seconds: float = Field(default=300.0, gt=0)


class OpsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="OPS_", env_nested_delimiter="__", extra="ignore", frozen=True)

    development_secrets: ClassVar[tuple[str, ...]] = (
        "session_secret",
        "ingest_admin_token",
        "bootstrap_admin_password",
        "delivery_operator_token",
        "matching_operator_token",
    )

    service_name: str = "ops"
    http_port: int = Field(default=8005, ge=0, le=65535)
    public_base_url: str = "http://127.0.0.1:8005"

    session_secret: str = Field(default=DEV_SESSION_SECRET, min_length=32, description="Signs session cookies.")
    session_hours: float = Field(default=12.0, gt=0, description="A login lasts this long.")
    secure_cookies: bool | None = Field(
        default=None, description="Send the session cookie over HTTPS only; default: only in production."
    )
    login_throttle: LoginThrottle = LoginThrottle()

    bootstrap_admin_username: str | None = Field(default="admin", description="Created at start if missing.")
    bootstrap_admin_password: str | None = Field(default=DEV_BOOTSTRAP_ADMIN_PASSWORD)

    ingest_url: str = Field(default="http://127.0.0.1:8001", description="The ingest service (feed health, pause).")
    ingest_admin_token: str = Field(default=DEV_INGEST_ADMIN_TOKEN, min_length=8)
    ingest_timeout_seconds: float = Field(default=5.0, gt=0)
    ingest_decision_timeout_seconds: float = Field(
        default=60.0, gt=0, description="Releasing a large storm hold publishes thousands of changes: allow for it."
    )
    feed_poll_interval_seconds: float = Field(default=30.0, gt=0, description="How often feed health is fetched.")
    storm_poll_interval_seconds: float = Field(
        default=5.0, gt=0, description="How often held storms are fetched from ingest (a new hold shows this fast)."
    )
    decided_storms_shown: int = Field(default=10, ge=0, le=100, description="Recently decided storm holds listed.")

    delivery_url: str = Field(default="http://127.0.0.1:8004", description="The delivery service (blocking notices).")
    delivery_operator_token: str = Field(
        default=DEV_DELIVERY_OPERATOR_TOKEN, min_length=16, description="Delivery's DELIVERY_OPERATOR_TOKEN."
    )
    delivery_timeout_seconds: float = Field(default=5.0, gt=0)

    matching_url: str = Field(default="http://127.0.0.1:8003", description="The matching service (its counts).")
    matching_operator_token: str = Field(
        default=DEV_OPERATOR_TOKEN, min_length=16, description="Matching's MATCHING_OPERATOR_TOKEN."
    )
    matching_timeout_seconds: float = Field(default=5.0, gt=0)

    admin_action_limit: int = Field(
        default=30, ge=1, description="Admin actions (replays, pauses, storm decisions, overrides, blocks) per window."
    )
    admin_action_window_seconds: float = Field(default=60.0, gt=0)

    consumer_groups: list[str] = Field(
        default_factory=lambda: list(DEFAULT_CONSUMER_GROUPS),
        description="Consumer groups whose lag and dead-letter topics are watched.",
    )
    pipeline_poll_interval_seconds: float = Field(default=15.0, gt=0, description="How often lag and DLQs are read.")
    dead_letters_shown: int = Field(default=20, ge=1, le=500, description="Newest dead letters listed per group.")
    refresh_seconds: float = Field(default=3.0, gt=0, description="How often an open page refreshes its data.")

    @field_validator("bootstrap_admin_username", "bootstrap_admin_password", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        """An empty variable switches the bootstrap admin off (production creates operators with the CLI)."""
        return None if value == "" else value

    @property
    def cookie_secure(self) -> bool:
        return self.secure_cookies if self.secure_cookies is not None else self.environment == "production"

    @model_validator(mode="after")
    def _safe_settings(self) -> OpsSettings:
        if self.environment == "production" and self.secure_cookies is False:
            raise ValueError("secure_cookies must not be false in production (the session cookie needs HTTPS)")
        if (self.bootstrap_admin_username is None) != (self.bootstrap_admin_password is None):
            raise ValueError("set both bootstrap_admin_username and bootstrap_admin_password, or neither")
        if self.bootstrap_admin_password is not None and len(self.bootstrap_admin_password) < 12:
            raise ValueError("bootstrap_admin_password must be at least 12 characters")
        for group in self.consumer_groups:
            if not group or not all(c.isalnum() or c in "-_." for c in group):
                raise ValueError(f"invalid consumer group name {group!r}")
        return self
