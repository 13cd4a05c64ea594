"""The dashboards and rules against a real Prometheus (Debian's, started by deploy/local/prometheus.sh) scraping a
real worker under load: every PromQL query of every dashboard must return data, every metric it names must be on
the worker's /metrics page, and every alerting rule must evaluate without error."""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from simulation.simulator import simulate
from streams.schema import encode
from tests.conftest import Deployment, Services, WorkerProcess
from tests.support.helpers import produce
from tests.support.ops import (
    PROMETHEUS_SERIES,
    PROMETHEUS_SH,
    WORKER_JOB,
    dashboard_exprs,
    label_values,
    metric_names,
    rules,
    sample_names,
    variable_queries,
)

pytestmark = pytest.mark.integration

ENV = "integration"
HOURS = 3
TEAMS = {"sim-000000": "ward-7", "sim-000001": "ward-7", "sim-000002": "ward-9"}
"""Enrolled patients and their care teams; the simulation's fourth patient stays unassigned."""


@dataclass(frozen=True)
class Prometheus:
    url: str
    state: Path

    def scrape(self, name: str, target: str, labels: dict[str, str]) -> None:
        """Add a target of job twinmon-worker (file-based discovery; picked up within a second)."""
        tmp = self.state / "targets" / f".{name}.tmp"
        tmp.write_text(json.dumps([{"targets": [target], "labels": labels}]))
        os.replace(tmp, self.state / "targets" / f"{name}.json")

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=30) as resp:  # noqa: S310
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] in ("vector", "scalar"), data
        result: list[dict[str, Any]] = data["result"] if data["resultType"] == "vector" else [
            {"metric": {}, "value": data["result"]}]
        return result

    def value(self, expr: str) -> float:
        result = self.query(expr)
        return sum(float(r["value"][1]) for r in result) if result else 0.0


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    state = tmp_path_factory.mktemp("prometheus")
    env = {**os.environ, "PROMETHEUS_SCRAPE_INTERVAL": "1s"}
    out = subprocess.run(["bash", str(PROMETHEUS_SH), "start", str(state)], env=env, capture_output=True, text=True,
                         timeout=600, check=False)
    if out.returncode != 0:
        pytest.fail(f"prometheus.sh start failed:\n{out.stderr[-4000:]}")
    try:
        yield Prometheus(out.stdout.strip().splitlines()[-1], state)
    finally:
        subprocess.run(["bash", str(PROMETHEUS_SH), "stop", str(state)], capture_output=True, timeout=120,
                       check=False)


def load() -> list[tuple[bytes | None, bytes]]:
    """Three hours of four deteriorating patients (alerts), ending now, and a few messages that are dead-lettered."""
    start = int(time.time() * 1000) - HOURS * 3_600_000
    readings = simulate(4, HOURS * 3600.0, rate=0.25, seed=31, start_ms=start, deteriorating_share=1.0)
    messages: list[tuple[bytes | None, bytes]] = [(r.patient_id.encode(), encode(r)) for _, r in readings]
    bad: list[tuple[bytes | None, bytes]] = [(b"sim-000000", b"{not json"), (None, b"[1, 2]")]
    return messages[: len(messages) // 2] + bad + messages[len(messages) // 2:]


def acknowledge_one_alert(deployment: Deployment) -> None:
    for pid in [f"sim-{i:06d}" for i in range(4)]:
        listing = deployment.run("alert", "list", pid).stdout
        if "NOT acknowledged" in listing:
            alert_id = next(line.split()[0] for line in listing.splitlines() if "NOT acknowledged" in line)
            deployment.run("alert", "ack", pid, alert_id, "--user", "nurse-17")
            return
    raise AssertionError("no open, unacknowledged alert to acknowledge")


def wait_until(what: str, check: Any, worker: WorkerProcess, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if worker.proc.poll() is not None:
            raise AssertionError(f"worker exited with {worker.proc.returncode}:\n{worker.log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen in {timeout}s:\n{worker.log.read_text()[-3000:]}")
        time.sleep(0.5)


def test_every_dashboard_query_returns_data_from_a_real_worker_and_every_rule_evaluates(
    services: Services, deployment: Deployment, prometheus: Prometheus
) -> None:
    for pid, team in TEAMS.items():
        deployment.run("enrol", pid, "--team", team)
    messages = load()
    half = len(messages) // 2
    produce(services.bootstrap, deployment.topic_vitals, messages[:half])

    started = time.monotonic()
    worker = deployment.start_worker()
    instance = urllib.parse.urlsplit(worker.metrics_url).netloc
    prometheus.scrape(f"worker-{uuid.uuid4().hex[:8]}", instance, {"env": ENV})
    selector = f'{{env="{ENV}", instance="{instance}"}}'
    try:
        # The rest of the load only once Prometheus has scraped the worker: rates need the counters to rise
        # between two scrapes, and the worker can finish a whole backlog before the first one.
        wait_until("Prometheus scraping the worker", lambda: bool(prometheus.query(
            f"twinmon_events_consumed_total{selector}")), worker)
        produce(services.bootstrap, deployment.topic_vitals, messages[half:])
        worker.wait_for("twinmon_events_consumed_total", len(messages) + len(TEAMS))
        worker.wait_for("twinmon_alerts_total", 1)
        acknowledge_one_alert(deployment)
        worker.wait_for("twinmon_alert_time_to_acknowledge_seconds_count", 1, timeout=60)
        worker.wait_for("twinmon_patients_monitored", 4, timeout=60)  # the census has run since the load

        # Prometheus has scraped all of that.
        wait_until("Prometheus seeing the acknowledgement and the census", lambda: (
            prometheus.value(f"twinmon_alert_time_to_acknowledge_seconds_count{selector}") >= 1
            and prometheus.value(f"sum(twinmon_patients_monitored{selector})") >= 4
            and prometheus.value(f'up{{job="{WORKER_JOB}", env="{ENV}"}}') == 1), worker)
        with urllib.request.urlopen(worker.metrics_url, timeout=5) as resp:  # noqa: S310 - the worker's own URL
            exported = sample_names(text_string_to_metric_families(resp.read().decode())) | PROMETHEUS_SERIES

        # Every query of every dashboard, with the variables set as a person would: this environment, this
        # worker, every care team, and a rate window that covers the run (Grafana's $__rate_interval).
        window = f"{int(time.monotonic() - started) + 30}s"
        values = {"$env": ENV, "$instance": instance, "$care_team": ".*", "$__rate_interval": window}
        problems: list[str] = []
        checked = 0
        for dashboard, title, expr in dashboard_exprs():
            unknown = metric_names(expr) - exported
            if unknown:
                problems.append(f"{dashboard} / {title}: names metrics the worker does not export: {unknown}")
            for name in sorted(values, key=len, reverse=True):
                expr = expr.replace(name, values[name])
            assert "$" not in expr, expr
            result = prometheus.query(expr)
            finite = [r for r in result if math.isfinite(float(r["value"][1]))]
            if not finite:
                problems.append(f"{dashboard} / {title}: no data ({result}) from {expr}")
            checked += 1
        assert checked >= 40
        assert problems == [], "\n".join(problems)

        # The variables' label_values queries find this environment, this worker and the care teams.
        expected = {"env": {ENV}, "instance": {instance}, "care_team": {*TEAMS.values(), "unassigned"}}
        for dashboard, variable, query in variable_queries():
            series, label = label_values(query)
            assert metric_names(series) <= exported, (dashboard, variable)
            found = set(prometheus.api(f"label/{label}/values", **{"match[]": series.replace("$env", ENV)}))
            assert expected[label] <= found, (dashboard, variable, found)

        # Every alerting rule is loaded and evaluates against the live series without error.
        groups = prometheus.api("rules", type="alert")["groups"]
        loaded = {r["name"]: r for g in groups for r in g["rules"]}
        assert set(loaded) == {r["alert"] for r in rules()}
        wait_until("a rule evaluation after the load", lambda: all(
            r["health"] == "ok" for g in prometheus.api("rules", type="alert")["groups"] for r in g["rules"]),
            worker, timeout=30)
        for rule in rules():
            assert metric_names(rule["expr"]) <= exported, rule["alert"]
    finally:
        worker.stop()
