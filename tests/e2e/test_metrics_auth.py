"""The worker's metrics behind a bearer token (TWINMON_METRICS_TOKEN): a real worker, scraped by a real Prometheus
(deploy/local/prometheus.sh) with the token file and by one without it, and by plain HTTP clients."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TWINMON, Deployment
from tests.support.ops import PROMETHEUS_SH

pytestmark = pytest.mark.integration


def get(url: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as resp:  # noqa: S310
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except urllib.error.URLError:
        return 0, ""  # not listening (yet)


def start_prometheus(state: Path, target: str, token_file: Path | None) -> str:
    env = {**os.environ, "PROMETHEUS_SCRAPE_INTERVAL": "1s", "PROMETHEUS_TARGETS": target}
    if token_file is not None:
        env["PROMETHEUS_METRICS_TOKEN_FILE"] = str(token_file)
    out = subprocess.run(["bash", str(PROMETHEUS_SH), "start", str(state)], env=env, capture_output=True, text=True,
                         timeout=600, check=False)
    if out.returncode != 0:
        pytest.fail(f"prometheus.sh start failed:\n{out.stderr[-4000:]}")
    return out.stdout.strip().splitlines()[-1]


def target_health(prometheus: str, deadline: float) -> dict[str, Any]:
    while True:
        with urllib.request.urlopen(f"{prometheus}/api/v1/targets", timeout=10) as resp:  # noqa: S310
            active = json.loads(resp.read())["data"]["activeTargets"]
        if active and active[0]["health"] != "unknown":
            return dict(active[0])
        assert time.monotonic() < deadline, "Prometheus never scraped the worker"
        time.sleep(0.5)


def test_metrics_need_the_token_and_prometheus_sends_it(deployment: Deployment, tmp_path: Path) -> None:
    token = secrets.token_urlsafe(24)
    worker = deployment.start_worker(TWINMON_METRICS_TOKEN=token)
    states = [tmp_path / "prom-with", tmp_path / "prom-without"]
    try:
        base = worker.metrics_url.removesuffix("/metrics")
        deadline = time.monotonic() + 60
        while get(f"{base}/healthz")[0] != 200:
            assert worker.proc.poll() is None and time.monotonic() < deadline, worker.log.read_text()[-3000:]
            time.sleep(0.3)
        # Without the token, or with another: 401, and no metric on the page.
        for wrong in (None, "not-" + token, token[:-1]):
            code, body = get(worker.metrics_url, wrong)
            assert code == 401 and "twinmon_" not in body and "TWINMON_METRICS_TOKEN" in body
        code, body = get(worker.metrics_url, token)
        assert code == 200 and "twinmon_events_consumed_total" in body
        assert get(f"{base}/healthz")[0] == 200  # the kubelet's probes carry no credentials
        progress = subprocess.run([TWINMON, "progress", "--metrics-url", worker.metrics_url, "--count", "1",
                                   "--interval", "0.2"], env={**deployment.env, "TWINMON_METRICS_TOKEN": token},
                                  capture_output=True, text=True, timeout=30, check=False)
        assert progress.returncode == 0 and "events/s" in progress.stdout, progress.stdout + progress.stderr

        token_file = tmp_path / "metrics-token"
        token_file.write_text(token)
        target = urllib.parse.urlsplit(worker.metrics_url).netloc
        with_token = start_prometheus(states[0], target, token_file)
        without = start_prometheus(states[1], target, None)
        deadline = time.monotonic() + 60
        assert target_health(with_token, deadline)["health"] == "up"
        refused = target_health(without, deadline)
        assert refused["health"] == "down" and "401" in refused["lastError"], refused
        assert token not in (states[0] / "prometheus.yml").read_text()  # the file is named, the token is not
    finally:
        for state in states:
            subprocess.run(["bash", str(PROMETHEUS_SH), "stop", str(state)], capture_output=True, timeout=120,
                           check=False)
        worker.stop()
    assert token not in worker.log.read_text()
