"""Settings of the subscription service (environment prefix ``SUBSCRIPTION_``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import ContactCryptoSettings

# Usable only in development and test: the service refuses to start in production with any of them.
DEV_TOKEN_SECRET = "subscription-dev-token-secret-not-for-production"  # noqa: S105 - refused in production
DEV_TWILIO_AUTH_TOKEN = "subscription-dev-twilio-auth-token"  # noqa: S105 - refused in production
DEV_SMS_FROM_NUMBER = "+15005550006"


class SubscriptionSettings(ContactCryptoSettings):
    model_config = SettingsConfigDict(
        env_prefix="SUBSCRIPTION_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    service_name: str = "subscription"
    http_port: int = Field(default=8002, ge=0, le=65535)
    public_base_url: str = "http://127.0.0.1:8002"

    development_secrets: ClassVar[tuple[str, ...]] = (
        *ContactCryptoSettings.development_secrets,
        "token_secret",
        "twilio_auth_token",
        "sms_from_number",
    )

    token_secret: str = Field(
        default=DEV_TOKEN_SECRET, min_length=32, description="Signs manage, verify and unsubscribe tokens."
    )
    twilio_auth_token: str = Field(default=DEV_TWILIO_AUTH_TOKEN, description="Checks inbound SMS signatures.")
    sms_from_number: str = Field(default=DEV_SMS_FROM_NUMBER, description="Our SMS sender number (E.164).")

    service_display_name: str = "Custody Watch"
    help_url: str = "https://custodywatch.org/help"
    default_phone_region: str = Field(default="US", min_length=2, max_length=2)
    hotline_number: str | None = Field(
        default=None,
        pattern=r"^\+[1-9]\d{6,14}$",
        description="The hotline's phone number victims call (E.164); the find page shows it with each agency's "
        "5-digit number. None: the page says nothing of the hotline.",
    )

    verification_code_ttl_seconds: int = Field(default=600, ge=1)
    verification_max_attempts: int = Field(default=5, ge=1, le=10)
    resend_min_interval_seconds: int = Field(default=60, ge=0)
    resend_max_per_hour: int = Field(default=5, ge=1)

    subscribe_limit_per_client_per_hour: int = Field(default=20, ge=1)
    subscribe_limit_per_contact_per_day: int = Field(default=5, ge=1)
    lookup_limit_per_client_per_minute: int = Field(default=60, ge=1)
    verify_limit_per_client_per_hour: int = Field(default=60, ge=1)
    manage_limit_per_client_per_minute: int = Field(default=60, ge=1)

    @model_validator(mode="after")
    def _safe_secrets(self) -> SubscriptionSettings:
        if self.environment == "production" and not self.public_base_url.startswith("https://"):
            raise ValueError("public_base_url must be https:// in production")
        return self
