"""Each service's wiring equals the contracts: what its ``consumers.py`` declares (``CONSUMER_GROUP``,
``CONSUMED_TOPICS``, ``PRODUCED_TOPICS``) is what :mod:`shared.topics` and ``contracts/asyncapi.json`` say, and
what its app runs on.

The app's :class:`~shared.runtime.ServiceRuntime` enforces the declaration while the service runs (a consumer of
other topics is refused, a producer refuses undeclared topics: see ``tests/shared/test_runtime_declaration.py``), so
a declaration that matches here cannot differ from what the service does.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from shared.contracts import SERVICES
from shared.runtime import ServiceRuntime
from shared.topics import ALL_TOPICS, TopicSpec

CONTRACTS = Path(__file__).resolve().parents[1] / "contracts"


def names(specs: Any) -> list[str]:
    assert isinstance(specs, tuple), "a declaration is a tuple of TopicSpec"
    assert all(isinstance(spec, TopicSpec) for spec in specs)
    return sorted(spec.name for spec in specs)


def declaration(service: str) -> ModuleType:
    return importlib.import_module(f"services.{service}.consumers")


def runtime_of(service: str) -> ServiceRuntime:
    app_module = importlib.import_module(f"services.{service}.app")
    settings_module = importlib.import_module(f"services.{service}.settings")
    settings = getattr(settings_module, SERVICES[service])(environment="development")
    runtime = app_module.create_app(settings).state.runtime
    assert isinstance(runtime, ServiceRuntime)
    return runtime


def asyncapi_channels(service: str, action: str) -> list[str]:
    document = json.loads((CONTRACTS / "asyncapi.json").read_text())
    return sorted(
        operation["channel"]["$ref"].removeprefix("#/channels/")
        for operation in document["operations"].values()
        if operation["x-service"] == service and operation["action"] == action
    )


@pytest.mark.parametrize("service", list(SERVICES))
def test_the_declared_topics_are_those_of_the_contracts(service: str) -> None:
    declared = declaration(service)
    assert names(declared.CONSUMED_TOPICS) == sorted(s.name for s in ALL_TOPICS if service in s.consumers)
    assert names(declared.PRODUCED_TOPICS) == sorted(s.name for s in ALL_TOPICS if service in s.producers)
    assert names(declared.CONSUMED_TOPICS) == asyncapi_channels(service, "receive")
    assert names(declared.PRODUCED_TOPICS) == asyncapi_channels(service, "send")


@pytest.mark.parametrize("service", list(SERVICES))
def test_a_service_consumes_in_one_group_of_its_own_or_not_at_all(service: str) -> None:
    declared = declaration(service)
    group = getattr(declared, "CONSUMER_GROUP", None)
    if declared.CONSUMED_TOPICS:
        assert isinstance(group, str)
        assert group
    else:
        assert group is None, "a service that consumes nothing has no consumer group"
    others = {declaration(other).__dict__.get("CONSUMER_GROUP") for other in SERVICES if other != service}
    assert group is None or group not in others


@pytest.mark.parametrize("service", list(SERVICES))
def test_the_app_runs_on_its_declaration(service: str) -> None:
    declared = declaration(service)
    runtime = runtime_of(service)
    assert runtime.consumer_group == getattr(declared, "CONSUMER_GROUP", None)
    assert names(runtime.consumed_topics) == names(declared.CONSUMED_TOPICS)
    assert names(runtime.produced_topics) == names(declared.PRODUCED_TOPICS)
