"""Grafana dashboards parsed, and every query naming only metrics the code exports."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import yaml  # type: ignore[import-untyped]

from streams.settings import Settings
from tests.support.ops import DASHBOARDS_DIR, DEPLOY, ROOT, WORKER_JOB, dashboards, panels


def test_the_committed_dashboards_are_what_the_sdk_code_generates() -> None:
    # deploy/grafana/generate.py builds them with grafana-foundation-sdk's typed builders; the JSON is its output.
    spec = importlib.util.spec_from_file_location("grafana_generate", DEPLOY / "grafana" / "generate.py")
    assert spec is not None and spec.loader is not None
    generate = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = generate  # dataclasses look their module up there
    spec.loader.exec_module(generate)
    built = generate.dashboards()
    assert set(built) == {p.name for p in DASHBOARDS_DIR.glob("*.json")}
    for name, d in built.items():
        assert (DASHBOARDS_DIR / name).read_text() == generate.render(d), f"{name}: run deploy/grafana/generate.py"
    assert generate.main(["--check"]) == 0
    # What an on-call engineer reaches for first is on the operations dashboard.
    exprs = {t["expr"] for p in panels(dashboards()["twinmon-operations.json"]) for t in p.get("targets", [])}
    for metric in ("twinmon_consumer_lag_seconds", "twinmon_event_loop_stall_seconds_bucket",
                   "twinmon_event_loop_stall_max_seconds", 'op=~"save|index"', 'event="acknowledged"'):
        assert any(metric in e for e in exprs), metric


def test_dashboards_every_panel_has_a_query_and_the_variables_filter_it() -> None:
    found = dashboards()
    assert {d["title"] for d in found.values()} == {"twinmon operations", "twinmon clinical service"}
    assert len({d["uid"] for d in found.values()}) == len(found)
    for name, d in found.items():
        variables = {v["name"]: v for v in d["templating"]["list"]}
        assert {"datasource", "env", "instance"} <= variables.keys(), name
        assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
        ids = [p["id"] for p in panels(d)]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        for p in panels(d):
            assert p["gridPos"]["x"] >= 0 and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, (name, p["title"])
            if p["type"] == "row":
                continue
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, (name, p["title"])
            assert p.get("targets"), f"{name}: panel {p['title']!r} has no query"
            for t in p["targets"]:
                expr = t.get("expr", "")
                assert expr.strip(), f"{name}: panel {p['title']!r} has a query without expr"
                # Every query follows the environment and worker pickers.
                assert 'env=~"$env"' in expr and 'instance=~"$instance"' in expr, (name, p["title"], expr)
                refs = set(re.findall(r"\$(\w+)", expr)) - {"__rate_interval"}
                assert refs <= variables.keys(), (name, p["title"], refs)


def test_grafana_provisioning_matches_the_compose_mounts() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    grafana = compose["services"]["grafana"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in grafana["volumes"] if v.startswith("./"))
    for host in mounts:
        assert (DEPLOY / host).exists(), host
    provisioning = DEPLOY / "grafana" / "provisioning"
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert [(d["type"], d["url"], d["isDefault"]) for d in datasources] == [("prometheus", "http://prometheus:9090",
                                                                               True)]
    providers = yaml.safe_load((provisioning / "dashboards" / "twinmon.yml").read_text())["providers"]
    assert [p["options"]["path"] for p in providers] == [mounts["./grafana/dashboards"]]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (DASHBOARDS_DIR / Path(home).name).exists() and home.startswith(mounts["./grafana/dashboards"] + "/")


def test_compose_prometheus_scrapes_every_worker_replica_with_the_rules() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    prometheus = compose["services"]["prometheus"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in prometheus["volumes"] if v.startswith("./"))
    assert mounts == {"./prometheus/prometheus.yml": "/etc/prometheus/prometheus.yml",
                      "./prometheus/rules": "/etc/prometheus/rules"}
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == WORKER_JOB)
    worker = compose["services"]["worker"]
    # DNS discovery of the service name finds every replica of `--scale worker=N`.
    assert job["dns_sd_configs"][0]["names"] == ["worker"]
    assert str(job["dns_sd_configs"][0]["port"]) in worker["expose"]
    assert str(Settings().metrics_port) in worker["expose"]
    assert any(r.get("target_label") == "env" for r in job["relabel_configs"])
    # Inside a container the endpoint must not listen on loopback only.
    env = worker.get("environment", {})
    assert env.get("TWINMON_METRICS_HOST") == "0.0.0.0" or "TWINMON_METRICS_HOST=0.0.0.0" in (  # noqa: S104
        DEPLOY / "Dockerfile").read_text()


def test_the_image_holds_every_package_the_project_installs() -> None:
    # The image once lacked feed/, so `twinmon serve` could not start in it.
    import tomllib

    from setuptools import find_packages

    found = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packages = {p.split(".")[0] for p in find_packages(str(ROOT), include=found["include"])}
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert {"feed", "streams", "twin_state", "alerts"} <= packages
    for package in packages:
        assert f"COPY {package} ./{package}\n" in dockerfile, package


def test_compose_runs_the_feed_reachable_with_its_tokens_on_a_volume() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    feed = compose["services"]["feed"]
    assert feed["command"] == ["serve"]
    env = feed["environment"]
    assert env["TWINMON_API_HOST"] == "0.0.0.0"  # noqa: S104 - published port
    assert f"{Settings().api_port}:{Settings().api_port}" in feed["ports"]
    volume, mount = feed["volumes"][0].split(":")
    assert volume in compose["volumes"] and env["TWINMON_TOKENS_FILE"].startswith(mount + "/")
    assert {k for k in env if k.startswith("TWINMON_")} <= {f"TWINMON_{n.upper()}" for n in Settings.model_fields}
