"""docker-compose.yml and deploy/k8s cannot be run here (no Docker engine), so check their structure and that
every setting they pass exists in the service's settings class."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from shared.contracts import SERVICES
from shared.topics import DEFAULT_PARTITIONS

ROOT = Path(__file__).resolve().parents[1]


def settings_class(service: str) -> type[BaseModel]:
    module = importlib.import_module(f"services.{service}.settings")
    cls: type[BaseModel] = getattr(module, SERVICES[service])
    return cls


def unknown_settings(variables: dict[str, Any]) -> list[str]:
    """Names among ``variables`` (e.g. ``INGEST_KAFKA__BOOTSTRAP_SERVERS``) that no settings field reads."""
    unknown = []
    for name in variables:
        service = name.split("_", 1)[0].lower()
        if service not in SERVICES:
            unknown.append(name)
            continue
        model: type[BaseModel] | None = settings_class(service)
        for part in name.split("_", 1)[1].lower().split("__"):
            if model is None or part not in model.model_fields:
                unknown.append(name)
                break
            annotation = model.model_fields[part].annotation
            model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return unknown


def test_compose_runs_every_service_with_settings_it_understands() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"kafka", "postgres", "sinks", *SERVICES} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["postgres"]["image"].startswith("postgres:")
    for service in SERVICES:
        definition = services[service]
        assert definition["command"] == ["python", "-m", f"services.{service}"]
        assert definition["build"]["dockerfile"] == "deploy/Dockerfile"
        assert unknown_settings(definition["environment"]) == []


def k8s_documents() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((ROOT / "deploy/k8s/kustomization.yaml").read_text())
    documents = []
    for resource in kustomization["resources"]:
        documents += [d for d in yaml.safe_load_all((ROOT / "deploy/k8s" / resource).read_text()) if d]
    return documents


def test_k8s_manifests_are_well_formed() -> None:
    documents = k8s_documents()
    for document in documents:
        assert {"apiVersion", "kind", "metadata"} <= set(document), document
    workloads = {d["metadata"]["name"]: d for d in documents if d["kind"] in {"Deployment", "StatefulSet"}}
    assert set(workloads) == set(SERVICES)
    for name, workload in workloads.items():
        spec = workload["spec"]
        assert 1 <= spec["replicas"] <= DEFAULT_PARTITIONS, "more replicas than partitions would sit idle"
        assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
        container = spec["template"]["spec"]["containers"][0]
        assert container["command"] == ["python", "-m", f"services.{name}"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


@pytest.mark.parametrize("kind", ["ConfigMap", "Secret"])
def test_k8s_config_names_real_settings(kind: str) -> None:
    (document,) = [d for d in k8s_documents() if d["kind"] == kind]
    variables = document.get("data") or document.get("stringData")
    assert variables
    assert unknown_settings(variables) == []
