"""The Grafana dashboard (manifests/monitoring) queries only what the operator exports.

Every metric a panel's PromQL names must be one of the operator's metric families, with the
sample suffix its type allows (``_total`` for counters, ``_bucket``/``_sum``/``_count`` for
histograms); every label it selects or groups by must be one of that family's labels (plus
``pod``, which Prometheus' Kubernetes scrape adds); and every family the operator exports is on
some panel, so a new metric without a panel fails here as a new metric without docs fails in
test_mf_docs.py. The kustomization renders to a ConfigMap holding the JSON byte for byte.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from mf_support import REPO

from queuejob.metrics import Metrics

DASHBOARD = REPO / "manifests" / "monitoring" / "queuejob-dashboard.json"
#: Added by the scrape (Kubernetes service discovery), not by the operator.
SCRAPE_LABELS = {"pod", "namespace", "instance", "job"}
#: PromQL words that look like metric names but are functions, keywords or aggregations.
PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "rate", "irate", "increase", "histogram_quantile",
    "by", "without", "on", "ignoring", "and", "or", "unless", "label_values", "le",
}  # fmt: skip
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def _families() -> dict[str, tuple[str, set[str]]]:
    """The operator's metric families: name -> (type, label names)."""
    metrics = Metrics(concurrency_limit=4)
    labels: dict[str, set[str]] = {}
    for attribute in vars(metrics).values():  # the prometheus_client metric objects
        attribute = getattr(attribute, "metric", attribute)  # per-queue series: theirs
        name, names = getattr(attribute, "_name", None), getattr(attribute, "_labelnames", None)
        if isinstance(name, str) and names is not None:
            labels[name] = set(names)
    out: dict[str, tuple[str, set[str]]] = {}
    for family in metrics.registry.collect():
        # The custom collector's families (unfinished work, longest running) are by `name`.
        out[family.name] = (family.type, labels.get(family.name, {"name"}))
    return out


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            exprs.append(var["definition"])
    return exprs


def _resolve(word: str, families: dict[str, tuple[str, set[str]]]) -> str | None:
    """The family a sample name belongs to, given its type's suffixes (None: unknown)."""
    for family, (kind, _) in families.items():
        for suffix in SUFFIXES.get(kind, ("",)):
            if word == family + suffix:
                return family
    return None


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def test_the_dashboard_has_panels_with_queries(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "queuejob-operator"
    queries = [p for p in dashboard["panels"] if p.get("targets")]
    assert len(queries) >= 10
    assert all(t["expr"].strip() for p in queries for t in p["targets"])
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_every_metric_the_dashboard_names_is_exported_with_its_labels(
    dashboard: dict[str, Any],
) -> None:
    families = _families()
    problems = []
    for expr in _exprs(dashboard):
        plain = re.sub(r'"[^"]*"', '""', expr)  # label values are not names
        for word in set(re.findall(r"\b([a-z_][a-z0-9_]*)\b", plain)):
            if word in PROMQL_WORDS or "_" not in word or word.startswith("__"):
                continue
            family = _resolve(word, families)
            if family is None:
                problems.append(f"{word!r} in {expr!r}: not a metric the operator exports")
                continue
            labels = families[family][1] | SCRAPE_LABELS | {"le"}
            selectors = re.findall(rf"{word}\{{([^}}]*)\}}", plain)
            used = {m for s in selectors for m in re.findall(r"([a-z_]+)\s*[=!]~?", s)}
            problems += [f"{word}: no label {u!r}" for u in sorted(used - labels)]
        for group in re.findall(r"\bby \(([^)]*)\)", expr):
            names = {g.strip() for g in group.split(",")}
            known = set().union(*(lab for _, lab in families.values())) | SCRAPE_LABELS | {"le"}
            problems += [f"by ({n}) in {expr!r}: no such label" for n in sorted(names - known)]
    assert not problems, problems


def test_every_exported_metric_is_on_the_dashboard(dashboard: dict[str, Any]) -> None:
    text = " ".join(_exprs(dashboard))
    words = set(re.findall(r"\b([a-z_][a-z0-9_]*)\b", text))
    families = _families()
    shown = {_resolve(w, families) for w in words} - {None}
    missing = sorted(set(families) - shown)
    assert not missing, f"metrics with no panel: {missing}"


def test_item_processing_time_has_a_panel_per_queuejob(dashboard: dict[str, Any]) -> None:
    """The per-item durations the workers record are shown as p50/p95 per QueueJob, apart from
    the handlers' run times that share the metric name."""
    exprs = {p["title"]: [t["expr"] for t in p.get("targets", [])] for p in dashboard["panels"]}
    (title,) = [t for t in exprs if t.startswith("Item processing time")]
    assert [e.split(",")[0] for e in exprs[title]] == [
        "histogram_quantile(0.5",
        "histogram_quantile(0.95",
    ]
    for expr in exprs[title]:
        assert 'workqueue_work_duration_seconds_bucket{name=~"$queuejob"}' in expr
        assert "by (le, name)" in expr
    handler_panels = [
        e for es in exprs.values() for e in es if "workqueue_work_duration_seconds" in e
    ]
    assert all("$queuejob" in e or "handler:" in e for e in handler_panels)


def test_the_kustomization_renders_the_dashboard_configmap(cluster: Any) -> None:
    rendered = cluster.kubectl("kustomize", str(REPO / "manifests" / "monitoring")).stdout
    (cm,) = list(yaml.safe_load_all(rendered))
    assert cm["kind"] == "ConfigMap"
    assert cm["metadata"]["namespace"] == "queuejob-system"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["data"]["queuejob-dashboard.json"] == DASHBOARD.read_text()
