"""The Grafana dashboard (deploy/grafana/convertmesh.json): valid JSON, every query names only
metrics and labels the services export, and every family the services export has a panel."""

from __future__ import annotations

import json
import re
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, Info

from mesh import telemetry
from tests.deploy.conftest import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "convertmesh.json"
_IDENTIFIER = re.compile(r"\b((?:convertmesh|process)_[a-z0-9_]+)\b(\{([^}]*)\})?")
_GROUPING = re.compile(r"\b(?:by|on|group_left|group_right)\s*\(([^)]*)\)")
# Added by Prometheus to every series it scrapes, and by histograms to their buckets.
_SCRAPE_LABELS = {"instance", "job", "le"}


def exported() -> dict[str, set[str]]:
    """Every sample name the services' registry can produce, with its label names."""
    names: dict[str, set[str]] = {}
    for family in vars(telemetry).values():
        labels = set(getattr(family, "_labelnames", ()))
        if isinstance(family, Counter):
            names[family._name + "_total"] = labels
        elif isinstance(family, Histogram):
            for suffix in ("_bucket", "_count", "_sum"):
                names[family._name + suffix] = labels
        elif isinstance(family, Gauge):
            names[family._name] = labels
        elif isinstance(family, Info):
            names[family._name + "_info"] = {"service"}
    for described in telemetry.CONSUMERS.describe():
        names[described.name] = {"stream", "consumer"}
    for family in REGISTRY.collect():  # prometheus_client's process collector
        for sample in family.samples:
            if sample.name.startswith("process_"):
                names[sample.name] = set(sample.labels)
    return names


def queries() -> list[tuple[str, str]]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    found = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found.append((panel["title"], target["expr"]))
    return found


def test_the_dashboard_is_grafana_json_with_unique_panels() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "convertmesh" and dashboard["schemaVersion"] >= 36
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    (variable,) = dashboard["templating"]["list"]
    assert (variable["name"], variable["query"]) == ("datasource", "prometheus")
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"] and panel["fieldConfig"]["defaults"]["unit"], panel["title"]


def test_every_query_names_exported_metrics_and_their_labels() -> None:
    names = exported()
    for title, expr in queries():
        used = _IDENTIFIER.findall(expr)
        assert used, (title, expr)
        labels: set[str] = set(_SCRAPE_LABELS)
        for name, _, matchers in used:
            assert name in names, f"{title}: {name} is not exported"
            labels |= names[name]
            for matcher in filter(None, (m.strip() for m in matchers.split(","))):
                label = re.split(r"[=!~]", matcher, maxsplit=1)[0]
                assert label in names[name], f"{title}: {name} has no label {label}"
        for grouping in _GROUPING.findall(expr):
            for label in filter(None, (g.strip() for g in grouping.split(","))):
                assert label in labels, f"{title}: no metric of {expr} has label {label}"


def test_every_exported_family_has_a_panel() -> None:
    used = {name for _, expr in queries() for name, _, _ in _IDENTIFIER.findall(expr)}
    families = {
        re.sub(r"_(bucket|count|sum)$", "", name)
        for name in exported()
        if name.startswith("convertmesh_")
    }
    shown = {re.sub(r"_(bucket|count|sum)$", "", name) for name in used}
    assert families - shown == set(), f"no panel for {sorted(families - shown)}"
    assert {"process_resident_memory_bytes", "process_cpu_seconds_total"} <= used
