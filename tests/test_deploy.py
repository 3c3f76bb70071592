"""docker-compose.yml and deploy/k8s cannot be run here (no Docker engine), so check their structure and that
every setting they pass exists in the service's settings class."""

from __future__ import annotations

import importlib
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from shared.contracts import SERVICES
from shared.settings import is_secret_name, placeholder_reason
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


def compose_broker_properties() -> dict[str, str]:
    """The server.properties deploy/compose/kafka-start.sh writes for the compose broker."""
    script = (ROOT / "deploy/compose/kafka-start.sh").read_text()
    body = script.split("<<PROPERTIES\n", 1)[1].split("\nPROPERTIES\n", 1)[0]
    return dict(line.split("=", 1) for line in body.splitlines())


def test_the_compose_broker_speaks_only_scram_and_denies_what_no_acl_allows() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    kafka = compose["services"]["kafka"]
    assert kafka["command"] == ["/bin/bash", "/compose/kafka-start.sh"]
    assert kafka["env_file"] == [".local/compose/kafka.env"]
    properties = compose_broker_properties()
    assert properties["listeners"] == "SASL_PLAINTEXT://:9092,CONTROLLER://localhost:9093"
    assert properties["listener.security.protocol.map"] == "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT"
    assert properties["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert properties["authorizer.class.name"].endswith("StandardAuthorizer")
    assert properties["allow.everyone.if.no.acl.found"] == "false"
    acls = compose["services"]["kafka-acls"]
    assert acls["command"][:4] == ["python", "-m", "shared.acls", "--apply"]
    assert acls["env_file"] == [".local/compose/acls.env"]


def test_each_compose_service_is_its_own_principal_with_only_its_own_password() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for service in SERVICES:
        definition = services[service]
        prefix = service.upper()
        environment = definition["environment"]
        assert environment[f"{prefix}_KAFKA__SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
        assert environment[f"{prefix}_KAFKA__SASL_USERNAME"] == service
        assert f"{prefix}_KAFKA__SASL_PASSWORD" not in environment, "passwords are generated, never committed"
        assert definition["env_file"] == [f".local/compose/{service}.env"]
        assert definition["depends_on"]["kafka-acls"] == {"condition": "service_completed_successfully"}


def test_the_compose_secrets_script_gives_each_service_its_own_generated_password(tmp_path: Path) -> None:
    out = tmp_path / "compose"
    script = ROOT / "deploy/compose/secrets.sh"
    subprocess.run(["bash", str(script), str(out)], check=True, capture_output=True, timeout=30)
    broker = dict(line.split("=", 1) for line in (out / "kafka.env").read_text().splitlines())
    assert set(broker) == {f"CW_SCRAM_USER_{user}" for user in ("admin", *SERVICES)}
    passwords = set()
    for service in SERVICES:
        [line] = (out / f"{service}.env").read_text().splitlines()
        name, password = line.split("=", 1)
        assert name == f"{service.upper()}_KAFKA__SASL_PASSWORD"
        assert password == broker[f"CW_SCRAM_USER_{service}"]
        assert placeholder_reason(password) is None
        passwords.add(password)
    assert len(passwords) == len(SERVICES)
    assert (out / "acls.env").read_text() == f"CW_KAFKA_ADMIN_PASSWORD={broker['CW_SCRAM_USER_admin']}\n"
    before = (out / "kafka.env").read_text()
    subprocess.run(["bash", str(script), str(out)], check=True, capture_output=True, timeout=30)
    assert (out / "kafka.env").read_text() == before, "kept: the broker's accounts were made with these"


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
    documents = [d for d in k8s_documents() if d["kind"] == kind]
    assert documents
    for document in documents:
        variables = document.get("data") or document.get("stringData")
        assert variables
        assert unknown_settings(variables) == []


def workloads() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in k8s_documents() if d["kind"] in {"Deployment", "StatefulSet"}}


def test_each_service_mounts_only_its_own_secret_and_the_example_values_are_refused() -> None:
    secrets = {d["metadata"]["name"]: d["stringData"] for d in k8s_documents() if d["kind"] == "Secret"}
    for service, workload in workloads().items():
        sources = workload["spec"]["template"]["spec"]["containers"][0]["envFrom"]
        mounted = [source["secretRef"]["name"] for source in sources if "secretRef" in source]
        assert mounted == [f"{service}-secrets"]
        keys = secrets[f"{service}-secrets"]
        assert all(key.startswith(service.upper() + "_") for key in keys), keys
        # A forgotten placeholder stops the service in production, naming the variable.
        for key, value in keys.items():
            if is_secret_name(key.lower()) and not key.endswith("_USERNAME"):
                assert placeholder_reason(value) is not None, key
    holders = {service for service, keys in secrets.items() if any("CONTACT_ENCRYPTION" in key for key in keys)}
    assert holders == {"subscription-secrets", "delivery-secrets"}


# Who calls whom: the ingress controller for the public paths, ops for the admin APIs, Prometheus for /metrics.
CALLERS = {
    "ingest": {"ingress", "ops", "monitoring"},
    "subscription": {"ingress", "monitoring"},
    "matching": {"ops", "monitoring"},
    "delivery": {"ingress", "ops", "monitoring"},
    "ops": {"ingress", "monitoring"},
}
PORTS = {"ingest": 8001, "subscription": 8002, "matching": 8003, "delivery": 8004, "ops": 8005}


def caller_name(peer: dict[str, Any]) -> str:
    if "podSelector" in peer:
        return str(peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"])
    namespace = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
    return {"ingress-nginx": "ingress", "monitoring": "monitoring"}[namespace]


def test_network_policies_let_each_service_be_reached_only_by_its_callers() -> None:
    policies = [d for d in k8s_documents() if d["kind"] == "NetworkPolicy"]
    deny = [p for p in policies if p["spec"]["podSelector"] == {}]
    assert len(deny) == 1
    assert deny[0]["spec"]["policyTypes"] == ["Ingress"]
    assert "ingress" not in deny[0]["spec"]
    allowed: dict[str, set[str]] = {}
    for policy in policies:
        if policy in deny:
            continue
        service = policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
        for rule in policy["spec"]["ingress"]:
            assert rule["ports"] == [{"port": PORTS[service]}]
            allowed.setdefault(service, set()).update(caller_name(peer) for peer in rule["from"])
    assert allowed == CALLERS


def test_the_ingress_routes_only_public_paths_and_the_services_trust_only_it() -> None:
    (ingress,) = [d for d in k8s_documents() if d["kind"] == "Ingress"]
    routes = {
        (path["backend"]["service"]["name"], path["path"])
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    assert routes == {
        ("ingest", "/v1/agencies"),
        ("subscription", "/"),
        ("delivery", "/v1/callbacks"),
        ("delivery", "/v1/ack"),
        ("delivery", "/v1/bounces"),
        ("ops", "/"),
    }
    (config,) = [d for d in k8s_documents() if d["kind"] == "ConfigMap"]
    for service in {name for name, _ in routes}:
        assert config["data"][f"{service.upper()}_TRUSTED_PROXIES"]
    assert "MATCHING_TRUSTED_PROXIES" not in config["data"]


def test_every_service_is_its_own_kafka_principal_over_tls() -> None:
    (config,) = [d for d in k8s_documents() if d["kind"] == "ConfigMap"]
    secrets = {d["metadata"]["name"]: d["stringData"] for d in k8s_documents() if d["kind"] == "Secret"}
    for service in SERVICES:
        assert config["data"][f"{service.upper()}_KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL"
        assert config["data"][f"{service.upper()}_KAFKA__SASL_USERNAME"] == service
        assert f"{service.upper()}_KAFKA__SASL_PASSWORD" in secrets[f"{service}-secrets"]
        assert f"{service.upper()}_KAFKA__SASL_PASSWORD" not in config["data"]
