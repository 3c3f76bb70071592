"""Settings of the subscription service (environment prefix ``SUBSCRIPTION_``)."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from shared.crypto import ContactCipher
from shared.settings import ServiceSettings

# Usable only in development and test: the service refuses to start in production with any of them.
DEV_CONTACT_ENCRYPTION_KEY = "c3Vic2NyaXB0aW9uLWRldi1rZXktMDAwMDAwMDAwMDA="
DEV_BLIND_INDEX_KEY = "subscription-dev-blind-index-key-not-for-production"
DEV_TOKEN_SECRET = "subscription-dev-token-secret-not-for-production"  # noqa: S105 - refused in production
DEV_TWILIO_AUTH_TOKEN = "subscription-dev-twilio-auth-token"  # noqa: S105 - refused in production
DEV_SMS_FROM_NUMBER = "+15005550006"

SECRET_DEFAULTS: dict[str, str] = {
    "contact_encryption_keys": DEV_CONTACT_ENCRYPTION_KEY,
    "blind_index_key": DEV_BLIND_INDEX_KEY,
    "token_secret": DEV_TOKEN_SECRET,
    "twilio_auth_token": DEV_TWILIO_AUTH_TOKEN,
    "sms_from_number": DEV_SMS_FROM_NUMBER,
}


class SubscriptionSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="SUBSCRIPTION_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    service_name: str = "subscription"
    http_port: int = Field(default=8002, ge=0, le=65535)
    public_base_url: str = "http://127.0.0.1:8002"

    contact_encryption_keys: str = Field(
        default=DEV_CONTACT_ENCRYPTION_KEY, description="Comma-separated Fernet keys, newest first."
    )
    blind_index_key: str = Field(default=DEV_BLIND_INDEX_KEY, description="HMAC key of the contact blind index.")
    token_secret: str = Field(
        default=DEV_TOKEN_SECRET, min_length=32, description="Signs manage, verify and unsubscribe tokens."
    )
    twilio_auth_token: str = Field(default=DEV_TWILIO_AUTH_TOKEN, description="Checks inbound SMS signatures.")
    sms_from_number: str = Field(default=DEV_SMS_FROM_NUMBER, description="Our SMS sender number (E.164).")

    service_display_name: str = "Custody Watch"
    help_url: str = "https://custodywatch.org/help"
    default_phone_region: str = Field(default="US", min_length=2, max_length=2)

    verification_code_ttl_seconds: int = Field(default=600, ge=1)
    verification_max_attempts: int = Field(default=5, ge=1, le=10)
    resend_min_interval_seconds: int = Field(default=60, ge=0)
    resend_max_per_hour: int = Field(default=5, ge=1)

    trusted_proxy_hops: int = Field(
        default=0, ge=0, description="How many reverse proxies append to X-Forwarded-For; 0 ignores the header."
    )
    subscribe_limit_per_client_per_hour: int = Field(default=20, ge=1)
    subscribe_limit_per_contact_per_day: int = Field(default=5, ge=1)
    lookup_limit_per_client_per_minute: int = Field(default=60, ge=1)
    verify_limit_per_client_per_hour: int = Field(default=60, ge=1)
    manage_limit_per_client_per_minute: int = Field(default=60, ge=1)

    @model_validator(mode="after")
    def _safe_secrets(self) -> SubscriptionSettings:
        if self.environment == "production":
            unsafe = [name for name, default in SECRET_DEFAULTS.items() if getattr(self, name) == default]
            if unsafe:
                raise ValueError("refusing to start in production with development defaults for: " + ", ".join(unsafe))
            if not self.public_base_url.startswith("https://"):
                raise ValueError("public_base_url must be https:// in production")
        # Fails here, at start-up, rather than on the first subscription.
        ContactCipher(self.contact_encryption_keys, self.blind_index_key)
        return self
