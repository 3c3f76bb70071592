"""The shipped Prometheus config, alert rules and Grafana dashboard parse, and name only metrics the code exports."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
METRIC = re.compile(r"\bcw_[a-z0-9_]+\b")
OPS_SHOWN = {
    "cw_ops_notifications_total",
    "cw_ops_notification_latency_seconds_bucket",
    "cw_ops_retries_in_flight",
    "cw_ops_consumer_lag",
    "cw_ops_dlq_size",
    "cw_ops_feed_last_seen_seconds",
    "cw_ops_feed_stale",
    "cw_ops_feed_records",
    "cw_ops_feed_in_custody",
}


def exported_metric_names() -> set[str]:
    """Every sample name the services and shared code register (counters as ``*_total``, histograms' series)."""
    importlib.import_module("shared.metrics")
    for module in sorted(ROOT.glob("services/*/metrics.py")):
        importlib.import_module(f"services.{module.parent.name}.metrics")
    return {name for name in REGISTRY._names_to_collectors if name.startswith("cw_")}


def expressions(value: Any) -> list[str]:
    """Every ``expr`` string anywhere in a parsed document."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "expr" and isinstance(item, str):
                found.append(item)
            else:
                found += expressions(item)
    elif isinstance(value, list):
        for item in value:
            found += expressions(item)
    return found


def test_prometheus_scrapes_all_five_services_on_their_default_ports() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {
        group["labels"]["service"]: group["targets"]
        for job in config["scrape_configs"]
        for group in job["static_configs"]
    }
    assert targets == {
        "ingest": ["127.0.0.1:8001"],
        "subscription": ["127.0.0.1:8002"],
        "matching": ["127.0.0.1:8003"],
        "delivery": ["127.0.0.1:8004"],
        "ops": ["127.0.0.1:8005"],
    }
    assert all(job["metrics_path"] == "/metrics" for job in config["scrape_configs"])
    for rule_file in config["rule_files"]:
        assert (ROOT / "deploy/prometheus" / rule_file).is_file()


@pytest.mark.parametrize("path", ["deploy/prometheus/alerts.yml", "deploy/grafana/custody-watch.json"])
def test_monitoring_references_only_metrics_that_exist(path: str) -> None:
    text = (ROOT / path).read_text()
    document = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    used = {name for expr in expressions(document) for name in METRIC.findall(expr)}
    assert used, "no metric referenced"
    assert used - exported_metric_names() == set()


def test_grafana_dashboard_shows_everything_the_ops_page_shows() -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/custody-watch.json").read_text())
    assert dashboard["uid"] == "custody-watch"
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        assert {"type", "title", "gridPos"} <= set(panel)
        for target in panel.get("targets", []):
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
    used = {name for expr in expressions(dashboard) for name in METRIC.findall(expr)}
    assert used >= OPS_SHOWN
    assert {"cw_consumer_processed_total", "cw_outbox_backlog", "cw_http_requests_total"} <= used


def test_alert_rules_are_well_formed() -> None:
    rules = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    names = [rule["alert"] for group in rules["groups"] for rule in group["rules"]]
    assert "FeedStale" in names
    assert len(names) == len(set(names))
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["expr"].count("(") == rule["expr"].count(")")
            assert rule["labels"]["severity"] in {"page", "ticket"}
