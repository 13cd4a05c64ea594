"""What the checks of the operations files share: paths, PromQL metric names, dashboards, rules, the metric
names the code exports. promtool comes from Debian's prometheus package (deploy/local/prometheus.sh installs it);
the Kubernetes schemas ship inside the kubernetes-validate package, so nothing is downloaded."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import yaml  # type: ignore[import-untyped]
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from streams.loop_health import GcPolicy, LoopWatch
from streams.metrics import Metrics
from streams.outage import Backoff, KafkaWatch, RedisOutage

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROMETHEUS_SH = DEPLOY / "local" / "prometheus.sh"
RULES_DIR = DEPLOY / "prometheus" / "rules"
RULE_TESTS_DIR = DEPLOY / "prometheus" / "tests"
DASHBOARDS_DIR = DEPLOY / "grafana" / "dashboards"
K8S_DIR = DEPLOY / "k8s"
RUNBOOK = ROOT / "docs" / "runbook.md"
WORKER_JOB = "twinmon-worker"
K8S_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
"""The oldest Kubernetes still commonly run, and the newest whose schemas the package ships."""


PROMQL_WORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
                          "unless", "offset", "inf", "nan"})
PROMETHEUS_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped",
                               "scrape_samples_post_metric_relabeling", "scrape_series_added"})
"""Series Prometheus itself writes for every target."""


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, keywords, labels or durations)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*", e):
        if e[m.end():].lstrip().startswith("(") or m.group().lower() in PROMQL_WORDS:
            continue
        names.add(m.group())
    return names


def sample_names(families: Iterable[Metric]) -> set[str]:
    """Every series name the families can produce, including families that have no sample yet."""
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
                "summary": ("_count", "_sum", "_created", ""), "info": ("_info",), "gauge": ("",),
                "unknown": ("",), "gaugehistogram": ("_bucket", "_gcount", "_gsum")}
    names: set[str] = set()
    for family in families:
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
        names.update(s.name for s in family.samples)
    return names


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS_DIR.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, expr) of every query of every panel."""
    return [(name, p["title"], t["expr"]) for name, d in dashboards().items() for p in panels(d)
            for t in p.get("targets", [])]


def variable_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, variable name, label_values(...) query) of every query variable."""
    out = []
    for name, d in dashboards().items():
        for v in d["templating"]["list"]:
            if v["type"] == "query":
                q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
                out.append((name, v["name"], q))
    return out


def label_values(query: str) -> tuple[str, str]:
    """``label_values(SELECTOR, LABEL)`` of a Grafana query variable, as (selector, label)."""
    m = re.fullmatch(r"label_values\((.+),\s*(\w+)\s*\)", query.strip())
    assert m is not None, f"not label_values(selector, label): {query}"
    return m.group(1), m.group(2)


def rules() -> list[dict[str, Any]]:
    return [r for path in sorted(RULES_DIR.glob("*.yml")) for g in yaml.safe_load(path.read_text())["groups"]
            for r in g["rules"]]


def exported_names() -> set[str]:
    registry = Metrics(CollectorRegistry()).registry
    RedisOutage(registry, Backoff())  # the worker's Redis outage metrics (streams/outage.py)
    KafkaWatch(registry)  # and its Kafka probe's
    LoopWatch(registry), GcPolicy(registry)  # and its event loop's (streams/app.py creates them with the metrics)
    return sample_names(registry.collect())


def k8s_documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def all_k8s() -> list[tuple[str, dict[str, Any]]]:
    return [(p.name, d) for p in sorted(K8S_DIR.glob("*.yaml")) for d in k8s_documents(p)]
