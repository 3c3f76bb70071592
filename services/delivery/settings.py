"""Settings of the delivery service (environment prefix ``DELIVERY_``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import SettingsConfigDict

from services.delivery.domain import RepeatPattern, RepeatPatterns
from shared.settings import ContactCryptoSettings, placeholder_reason
from shared.vocabulary import Channel, Urgency

# Usable only in development and test (the contact keys are shared with the subscription service's, so a local
# stack works out of the box); the service refuses to start in production with any of them.
DEV_TOKEN_SECRET = "delivery-dev-acknowledgement-secret-not-for-production"  # noqa: S105 - refused in production
DEV_OPERATOR_TOKEN = "delivery-dev-operator-token"  # noqa: S105 - refused in production
DEV_TWILIO_AUTH_TOKEN = "dev-twilio-auth-token"  # noqa: S105 - refused in production
FAILOVER_ROUTE = "failover"
"""The name status-callback URLs carry when several SMS providers share the traffic."""


class SmsProviderSettings(BaseModel):
    """One Twilio-shaped SMS provider; its ``auth_token`` also checks the signatures of its status callbacks."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    account_sid: str = Field(min_length=1)
    auth_token: str = Field(min_length=1)
    from_number: str = Field(pattern=r"^\+[1-9]\d{6,14}$")
    base_url: str = "https://api.twilio.com"
    rate_per_second: float = Field(default=10.0, gt=0)
    timeout: float = Field(default=10.0, gt=0)


class SmtpSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=2525, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    use_tls: bool = False
    from_address: str = "Custody Watch <notices@custodywatch.localhost>"
    unsubscribe_mailto: str | None = None
    timeout: float = Field(default=10.0, gt=0)
    rate_per_second: float = Field(default=20.0, gt=0)


def _dev_voice_provider() -> SmsProviderSettings:
    return SmsProviderSettings(
        name="voice-local",
        account_sid="ACdev",
        auth_token=DEV_TWILIO_AUTH_TOKEN,
        from_number="+15005550006",
        base_url="http://127.0.0.1:8027",
        rate_per_second=1.0,
    )


def _dev_sms_providers() -> list[SmsProviderSettings]:
    return [
        SmsProviderSettings(
            name="local",
            account_sid="ACdev",
            auth_token=DEV_TWILIO_AUTH_TOKEN,
            from_number="+15005550006",
            base_url="http://127.0.0.1:8025",
        )
    ]


class DeliverySettings(ContactCryptoSettings):
    model_config = SettingsConfigDict(env_prefix="DELIVERY_", env_nested_delimiter="__", extra="ignore", frozen=True)

    service_name: str = "delivery"
    http_port: int = Field(default=8004, ge=0, le=65535)
    public_base_url: str = "http://127.0.0.1:8004"

    development_secrets: ClassVar[tuple[str, ...]] = (
        *ContactCryptoSettings.development_secrets,
        "token_secret",
        "operator_token",
    )

    token_secret: str = Field(default=DEV_TOKEN_SECRET, min_length=32, description="Signs acknowledgement links.")
    operator_token: str = Field(default=DEV_OPERATOR_TOKEN, min_length=16, description="Bearer token of the ops API.")

    sms_providers: list[SmsProviderSettings] = Field(
        default_factory=_dev_sms_providers, description="First is primary, the rest take over on failure."
    )
    smtp: SmtpSettings = SmtpSettings()
    voice_provider: SmsProviderSettings = Field(
        default_factory=_dev_voice_provider,
        description="Twilio Programmable Voice (same fields as an SMS provider); its auth_token signs the webhooks.",
    )
    bounce_secrets: dict[str, str] = Field(
        default_factory=dict,
        description="Per sender of asynchronous bounces (the SMTP relay, an email provider's webhook): the HMAC-SHA256 "
        "key of its X-Bounce-Signature. A name without a key has no bounce endpoint.",
    )
    max_bounce_body_bytes: int = Field(
        default=64 * 1024, ge=1024, description="Largest bounce report accepted, refused before its signature check."
    )

    consumer_retry_attempts: int = Field(
        default=10, ge=1, description="Tries of a failing Kafka event (e.g. database down) before its dead letter."
    )
    consumer_retry_max_delay_seconds: float = Field(default=60.0, gt=0)

    database_pool_max: int = Field(default=20, ge=1, description="Sends, receipts and the consumer share it.")
    dispatch_interval_seconds: float = Field(
        default=0.5, gt=0, description="How often an idle dispatcher looks for notices due later (new ones wake it)."
    )
    dispatch_batch_size: int = Field(default=100, ge=1, description="Most notices claimed in one transaction.")
    dispatch_concurrency: int = Field(default=64, ge=1, description="Sends in progress at once.")
    bookkeeping_flush_ms: float = Field(
        default=5.0,
        ge=0,
        description="Hand-off results and receipts wait this long to be written together, in one transaction.",
    )
    bookkeeping_max_batch: int = Field(default=200, ge=1, description="Most of them written in one transaction.")
    bookkeeping_writers: int = Field(
        default=4, ge=1, description="Batches written at once, each on its own connection (one caps the throughput)."
    )
    sending_lease_seconds: float = Field(
        default=60.0, gt=0, description="An attempt still 'sending' after this is taken over (crash recovery)."
    )
    retry_base_seconds: float = Field(default=60.0, gt=0)
    retry_max_delay_seconds: float = Field(default=3600.0, gt=0)
    retry_window_seconds: float = Field(default=24 * 3600.0, gt=0, description="Temporary failures stop after this.")
    retry_max_attempts: int = Field(default=30, ge=1)
    repeat_interval_seconds: float = Field(default=30 * 60.0, gt=0, description="Urgent notices repeat this often.")
    repeat_window_seconds: float = Field(default=24 * 3600.0, gt=0, description="...for at most this long.")
    repeat_patterns: dict[Urgency, dict[Channel, RepeatPattern]] = Field(
        default_factory=lambda: {
            Urgency.URGENT: {
                Channel.VOICE: RepeatPattern(
                    interval_seconds=30 * 60.0,
                    window_seconds=24 * 3600.0,
                    unconfirmed_interval_seconds=2 * 3600.0,
                    failures_wait_for_repeat=True,
                )
            }
        },
        description=(
            "The calling pattern per event class and channel (JSON); a pair not named here repeats urgent notices"
            " by repeat_interval_seconds and repeat_window_seconds and sends informational ones once."
        ),
    )
    reconcile_after_seconds: float = Field(
        default=600.0, gt=0, description="Ask the provider about an SMS sent this long ago with no final receipt."
    )
    reconcile_interval_seconds: float = Field(default=60.0, gt=0)
    receipt_window_seconds: float = Field(default=72 * 3600.0, gt=0, description="Stop asking after this.")

    templates_directory: str | None = Field(
        default=None, description="Notice templates to use instead of the packaged ones (<language>/<kind>.*)."
    )

    crash_after_handoff_marker: str | None = Field(
        default=None,
        description="Test only: exit hard right after the first provider hand-off, unless this file exists.",
    )
    crash_before_call_marker: str | None = Field(
        default=None,
        description="Test only: exit hard right before the first provider call, unless this file exists.",
    )

    @model_validator(mode="after")
    def _safe_settings(self) -> DeliverySettings:
        names = [provider.name for provider in self.sms_providers]
        if len(set(names)) != len(names):
            raise ValueError("sms_providers names must be unique")
        if FAILOVER_ROUTE in names:
            raise ValueError(f"{FAILOVER_ROUTE!r} is reserved for the failover group; name the provider otherwise")
        if self.environment == "production":
            unsafe = [
                f"DELIVERY_SMS_PROVIDERS[{index}].auth_token"
                for index, p in enumerate(self.sms_providers)
                if p.auth_token == DEV_TWILIO_AUTH_TOKEN
            ]
            if self.voice_provider.auth_token == DEV_TWILIO_AUTH_TOKEN:
                unsafe.append("DELIVERY_VOICE_PROVIDER__AUTH_TOKEN")
            if unsafe:
                raise ValueError("refusing to start in production with development defaults for: " + ", ".join(unsafe))
            if placeholders := self._nested_placeholders():
                raise ValueError("refusing to start in production " + "; ".join(placeholders))
            if not self.public_base_url.startswith("https://"):
                raise ValueError("public_base_url must be https:// in production")
            for hook in ("crash_after_handoff_marker", "crash_before_call_marker"):
                if getattr(self, hook) is not None:
                    raise ValueError(f"{hook} is a test hook and is refused in production")
        if not self.sms_providers:
            raise ValueError("at least one SMS provider is required")
        slowest = max(
            [provider.timeout for provider in [*self.sms_providers, self.voice_provider]] + [self.smtp.timeout]
        )
        if self.sending_lease_seconds <= slowest:
            # A take-over asks the provider whether the stranded call went through; asked before the call could
            # have timed out, the provider may still be taking it, and the notice would go out twice.
            raise ValueError(
                f"sending_lease_seconds ({self.sending_lease_seconds:g}) must exceed every provider's timeout "
                f"({slowest:g} s)"
            )
        return self

    def _nested_placeholders(self) -> list[str]:
        """The secrets inside lists and objects, which the common check (top-level fields only) does not see."""
        secrets = {
            f"DELIVERY_SMS_PROVIDERS[{index}].auth_token": p.auth_token for index, p in enumerate(self.sms_providers)
        }
        secrets["DELIVERY_VOICE_PROVIDER__AUTH_TOKEN"] = self.voice_provider.auth_token
        secrets |= {f"DELIVERY_BOUNCE_SECRETS[{name}]": secret for name, secret in self.bounce_secrets.items()}
        if self.smtp.password is not None:
            secrets["DELIVERY_SMTP__PASSWORD"] = self.smtp.password
        return [f"{name} {reason}" for name, value in secrets.items() if (reason := placeholder_reason(value))]

    def repeats(self) -> RepeatPatterns:
        urgent = RepeatPattern(interval_seconds=self.repeat_interval_seconds, window_seconds=self.repeat_window_seconds)
        return RepeatPatterns(urgent=urgent, by_class=self.repeat_patterns)

    def sms_provider(self, name: str) -> SmsProviderSettings | None:
        return next((provider for provider in self.sms_providers if provider.name == name), None)
