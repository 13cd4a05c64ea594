"""Prometheus configuration and alerting rules checked by promtool, with a unit test for every rule."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from tests.support.ops import (
    DEPLOY,
    K8S_DIR,
    PROMETHEUS_SERIES,
    PROMETHEUS_SH,
    RULE_TESTS_DIR,
    RULES_DIR,
    RUNBOOK,
    WORKER_JOB,
    dashboard_exprs,
    exported_names,
    k8s_documents,
    label_values,
    metric_names,
    rules,
    variable_queries,
)


@pytest.fixture(scope="module")
def promtool() -> str:
    out = subprocess.run(["bash", str(PROMETHEUS_SH), "fetch"], capture_output=True, text=True, timeout=600,
                         check=False)
    if out.returncode != 0:
        pytest.fail(f"prometheus.sh fetch failed (installs Debian's prometheus for promtool):\n{out.stderr[-3000:]}")
    path = shutil.which("promtool")
    assert path is not None, "promtool not on PATH after prometheus.sh fetch"
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, check=False)


def with_repo_rules(config: dict[str, Any]) -> dict[str, Any]:
    """The same configuration, its rule_files pointing at the repository's rules (as mounted in deployment)."""
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    return {**config, "rule_files": [str(RULES_DIR / "*.yml")]}


def prometheus_configs() -> dict[str, dict[str, Any]]:
    k8s = next(d for d in k8s_documents(K8S_DIR / "prometheus-config.yaml") if d["kind"] == "ConfigMap")
    return {
        "deploy/prometheus/prometheus.yml": yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text()),
        "deploy/k8s/prometheus-config.yaml": yaml.safe_load(k8s["data"]["prometheus.yml"]),
    }


@pytest.mark.parametrize("name", ["deploy/prometheus/prometheus.yml", "deploy/k8s/prometheus-config.yaml"])
def test_prometheus_configs_pass_promtool_check_config_with_the_rules(promtool: str, name: str,
                                                                       tmp_path: Path) -> None:
    config = prometheus_configs()[name]
    for job in config["scrape_configs"]:  # promtool wants the mounted token file to exist: one of its own here
        if "credentials_file" in job.get("authorization", {}):
            (tmp_path / "token").write_text("t")
            job["authorization"]["credentials_file"] = str(tmp_path / "token")
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(with_repo_rules(config)))
    out = run(promtool, "check", "config", str(path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 1 rule files found" in out.stdout, out.stdout
    jobs = [job["job_name"] for job in config["scrape_configs"]]
    assert WORKER_JOB in jobs


def test_rules_pass_promtool_check_rules(promtool: str) -> None:
    files = sorted(str(p) for p in RULES_DIR.glob("*.yml"))
    assert files
    out = run(promtool, "check", "rules", *files)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rules())} rules found" in out.stdout


def test_rule_unit_tests_pass_promtool_test_rules(promtool: str) -> None:
    files = sorted(str(p) for p in RULE_TESTS_DIR.glob("*.yml"))
    assert files
    out = run(promtool, "test", "rules", *files)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "FAILED" not in out.stdout + out.stderr


def test_every_rule_is_unit_tested_firing_and_silent() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in RULE_TESTS_DIR.glob("*.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            for t in case.get("alert_rule_test", []):
                (firing if t.get("exp_alerts") else silent).add(t["alertname"])
    names = {r["alert"] for r in rules() if "alert" in r}
    assert names == {r.get("alert") for r in rules()}, "recording rules need tests of their own"
    assert names - firing == set(), "rules never tested firing"
    assert names - silent == set(), "rules never tested staying silent"
    assert (firing | silent) - names == set(), "tests of rules that do not exist"


def github_anchor(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_rule_links_its_runbook_section_and_names_severity_and_summary() -> None:
    anchors = {github_anchor(line.lstrip("#")) for line in RUNBOOK.read_text().splitlines() if line.startswith("## ")}
    for rule in rules():
        ann = rule["annotations"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert ann["summary"] and ann["description"], rule["alert"]
        path, _, anchor = ann["runbook_url"].partition("#")
        assert path == "docs/runbook.md" and anchor in anchors, (rule["alert"], ann["runbook_url"])
    sections = anchors - {"metrics"}
    assert sections == {r["alert"].lower() for r in rules()}, "a runbook section per rule, and no stale ones"


def test_rules_and_dashboards_name_only_metrics_the_worker_exports() -> None:
    exported = exported_names() | PROMETHEUS_SERIES
    used = {name for *_, expr in dashboard_exprs() for name in metric_names(expr)}
    used |= {name for _, _, q in variable_queries() for name in metric_names(label_values(q)[0])}
    used |= {name for r in rules() for name in metric_names(r["expr"])}
    assert used - exported == set()
    # The parser itself: a made-up metric is found, functions, labels and durations are not.
    assert metric_names('sum by (le, op) (rate(twinmon_nope_bucket{env=~"$env"}[5m])) / on (env) up > 0.5') == {
        "twinmon_nope_bucket", "up"}
