"""The entry point every service's ``__main__`` calls: validate settings, configure logs, serve HTTP."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from shared.logging import configure_logging
from shared.settings import ServiceSettings

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


def load_settings(settings_type: type[SettingsT]) -> SettingsT:
    """Read settings from the environment; on a bad value, say which variable and why, then exit."""
    try:
        return settings_type()
    except ValidationError as error:
        prefix = settings_type.model_config.get("env_prefix", "")
        lines = [f"invalid configuration for {settings_type.__name__}:"]
        for issue in error.errors():
            name = prefix + "__".join(str(part) for part in issue["loc"]).upper()
            lines.append(f"  {name}: {issue['msg']}")
        sys.exit("\n".join(lines))


def serve(create_app: Callable[[SettingsT], FastAPI], settings_type: type[SettingsT]) -> None:
    settings = load_settings(settings_type)
    configure_logging(settings.service_name, settings.log_level)
    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        proxy_headers=False,  # only the service's TRUSTED_PROXIES decide whose X-Forwarded-For is believed
        timeout_graceful_shutdown=10,
    )
