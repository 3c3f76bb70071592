"""Unit tests: delivery settings refuse unsafe production values; acknowledgement tokens cannot be forged."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from services.delivery.links import AcknowledgementTokens
from services.delivery.settings import DeliverySettings
from shared.crypto import generate_key
from tests.kafkautil import PRODUCTION_KAFKA

PROVIDER = {
    "name": "twilio",
    "account_sid": "AC123",
    "auth_token": "a-real-looking-auth-token",
    "from_number": "+15005550006",
}


def production(**overrides: object) -> DeliverySettings:
    values: dict[str, object] = {
        "environment": "production",
        "public_base_url": "https://notify.example.org",
        "contact_encryption_keys": generate_key(),
        "blind_index_key": "6QHkFkRyPcnS2qNPofnLJTcaw-nDZfqIxD8Y99eq",
        "token_secret": "JaLkCMYqflZ_2iwuWB9eziue8ALY8IHAqlshdDRy",
        "operator_token": "e2IgCizqFvAlOhVk-a9W-sekT_dubTnWtFLUlFn3",
        "sms_providers": [PROVIDER],
        "voice_provider": PROVIDER | {"name": "twilio-voice", "auth_token": "another-real-looking-token"},
        "kafka": PRODUCTION_KAFKA,
    }
    return DeliverySettings(**(values | overrides))  # type: ignore[arg-type]


def test_production_with_real_secrets_is_accepted() -> None:
    assert production().environment == "production"


@pytest.mark.parametrize(
    "unsafe",
    [
        {"contact_encryption_keys": DeliverySettings().contact_encryption_keys},
        {"token_secret": DeliverySettings().token_secret},
        {"operator_token": DeliverySettings().operator_token},
        {"sms_providers": [p.model_dump() for p in DeliverySettings().sms_providers]},
        {"voice_provider": DeliverySettings().voice_provider.model_dump()},
        {"voice_provider": PROVIDER | {"auth_token": "CHANGE-ME-please-0123456789"}},
        {"public_base_url": "http://notify.example.org"},
        {"crash_after_handoff_marker": "/tmp/crash"},
        {"crash_before_call_marker": "/tmp/crash"},
    ],
)
def test_production_refuses_development_defaults_and_test_hooks(unsafe: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        production(**unsafe)


def test_development_defaults_work_out_of_the_box() -> None:
    settings = DeliverySettings(environment="development")
    assert settings.http_port == 8004
    assert settings.service_name == "delivery"
    assert settings.sms_providers[0].name == "local"


def test_providers_come_from_the_environment_primary_first(monkeypatch: pytest.MonkeyPatch) -> None:
    second = PROVIDER | {"name": "backup", "base_url": "https://backup.example.org", "rate_per_second": 2}
    monkeypatch.setenv("DELIVERY_SMS_PROVIDERS", json.dumps([PROVIDER, second]))
    monkeypatch.setenv("DELIVERY_SMTP__HOST", "smtp.example.org")
    monkeypatch.setenv("DELIVERY_SMTP__STARTTLS", "true")
    settings = DeliverySettings()
    assert [p.name for p in settings.sms_providers] == ["twilio", "backup"]
    assert settings.sms_providers[1].rate_per_second == 2
    assert (settings.smtp.host, settings.smtp.starttls) == ("smtp.example.org", True)


@pytest.mark.parametrize(
    "providers",
    [
        [],
        [PROVIDER, PROVIDER],
        [PROVIDER | {"name": "failover"}],
        [PROVIDER | {"from_number": "5551234"}],
    ],
)
def test_bad_provider_lists_are_refused(providers: list[dict[str, object]]) -> None:
    with pytest.raises(ValidationError):
        DeliverySettings(sms_providers=providers)


def test_acknowledgement_tokens_round_trip_and_refuse_forgeries() -> None:
    tokens = AcknowledgementTokens("s" * 40)
    token = tokens.sign("n-123")
    assert tokens.notification_id(token) == "n-123"
    assert tokens.url("https://x.example/", "n-123") == f"https://x.example/v1/ack/{token}"
    assert tokens.notification_id(token[:-2] + "xx") is None
    assert tokens.notification_id("n-123") is None
    assert AcknowledgementTokens("t" * 40).notification_id(token) is None


def test_the_app_builds_and_documents_its_api_without_any_server() -> None:
    from services.delivery.app import create_app

    schema = create_app(DeliverySettings(environment="test")).openapi()
    assert {
        "/v1/callbacks/sms/{provider}",
        "/v1/ack/{token}",
        "/v1/notifications",
        "/v1/notifications/{notification_id}",
        "/v1/notifications/{notification_id}/stop",
    } <= set(schema["paths"])


def test_a_lease_shorter_than_a_provider_s_timeout_is_refused() -> None:
    """A take-over must not ask the provider about a call that could still be under way."""
    with pytest.raises(ValidationError, match="sending_lease_seconds"):
        DeliverySettings(environment="test", sending_lease_seconds=10.0)
    DeliverySettings(environment="test", sending_lease_seconds=10.5)
