"""docs/dashboard.md lists every metric of fate_registry.metrics, and the Grafana dashboard plots only those;
the dashboard's HTML escapes what it shows."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram

from fate_registry import metrics
from registry_server.dashboard.html import link, search_form, table, text

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _defined() -> set[str]:
    names = set()
    for value in vars(metrics).values():
        if isinstance(value, Counter):
            names.add(value._name + "_total")
        elif isinstance(value, Gauge | Histogram):
            names.add(value._name)
    return names


def test_every_metric_is_documented_and_only_those() -> None:
    documented = set(re.findall(r"^\| `(fate_registry_\w+)`", (DOCS / "dashboard.md").read_text(), re.MULTILINE))
    assert documented == _defined()


def test_the_grafana_dashboard_plots_defined_metrics() -> None:
    panels = json.loads((DOCS / "grafana-dashboard.json").read_text())["panels"]
    used = {
        re.sub(r"_(bucket|count|sum)$", "", name)
        for panel in panels
        for target in panel["targets"]
        for name in re.findall(r"fate_registry_\w+", target["expr"])
    }
    assert used == _defined()


def test_values_are_escaped() -> None:
    hostile = '<script>alert("x")</script>'
    assert "<script>" not in table(["a"], [[text(hostile)]])
    assert "<script>" not in link("/version", hostile, model_id=hostile)
    assert "<script>" not in search_form("/", {"model_id": hostile})
