"""Each service, started in production with a placeholder secret, stops at once and names the variable."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from pydantic import ValidationError

from devservers.ports import repo_root
from services.delivery.settings import DeliverySettings
from tests.delivery.test_settings_and_links import PROVIDER, production

PLACEHOLDERS = {
    "ingest": ("INGEST_ADMIN_TOKEN", "CHANGE-ME-at-least-32-characters-long"),
    "subscription": ("SUBSCRIPTION_TWILIO_AUTH_TOKEN", "CHANGE-ME"),
    "matching": ("MATCHING_OPERATOR_TOKEN", "x" * 37),
    "delivery": ("DELIVERY_OPERATOR_TOKEN", "changeme-changeme-changeme"),
    "ops": ("OPS_BOOTSTRAP_ADMIN_PASSWORD", "CHANGE-ME-first-login-then-empty"),
}


@pytest.mark.parametrize("service", sorted(PLACEHOLDERS))
def test_a_placeholder_secret_stops_the_service_at_start(service: str) -> None:
    variable, value = PLACEHOLDERS[service]
    prefix = service.upper() + "_"
    environment = {name: item for name, item in os.environ.items() if not name.startswith(prefix)}
    environment |= {f"{prefix}ENVIRONMENT": "production", variable: value}
    finished = subprocess.run(
        [sys.executable, "-m", f"services.{service}"],
        cwd=repo_root(),
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode != 0
    refusal = next(line for line in finished.stderr.splitlines() if "refusing to start in production" in line)
    assert variable in refusal
    assert any(word in refusal for word in ("placeholder", "too little entropy", "too short"))


def delivery_in_production(**overrides: object) -> DeliverySettings:
    """Delivery's production settings with generated secrets everywhere, but for ``overrides``."""
    return production(**({"voice_provider": PROVIDER | {"name": "voice"}} | overrides))


@pytest.mark.parametrize(
    ("unsafe", "variable"),
    [
        ({"sms_providers": [PROVIDER, PROVIDER | {"name": "backup", "auth_token": "CHANGE-ME"}]}, "[1].auth_token"),
        ({"smtp": {"username": "notices", "password": "changeme-please-now"}}, "DELIVERY_SMTP__PASSWORD"),
        ({"bounce_secrets": {"relay": "x" * 40}}, "DELIVERY_BOUNCE_SECRETS[relay]"),
        (
            {"voice_provider": PROVIDER | {"name": "voice", "auth_token": "example-voice-token-1234"}},
            "DELIVERY_VOICE_PROVIDER__AUTH_TOKEN",
        ),
    ],
)
def test_delivery_refuses_a_placeholder_nested_secret_and_names_it(unsafe: dict[str, object], variable: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(variable)):
        delivery_in_production(**unsafe)


def test_delivery_accepts_generated_nested_secrets() -> None:
    settings = delivery_in_production(
        smtp={"username": "notices", "password": "q7Vd2-LmXo9RtA4sKp0eWz"},
        bounce_secrets={"relay": "Yh3Kq9vLz2RmT8wXc5NbJ1pD"},
    )
    assert settings.bounce_secrets == {"relay": "Yh3Kq9vLz2RmT8wXc5NbJ1pD"}
