"""The operations files are checked for real: Prometheus configuration and rules by promtool (with a unit test for
every rule), Grafana dashboards parsed and every query naming only metrics the code exports, Kubernetes manifests
validated against the Kubernetes JSON schemas offline, and a metrics page that stays small at 100,000 patients.

promtool comes from Debian's prometheus package, which deploy/local/prometheus.sh installs when it is missing;
the Kubernetes schemas ship inside the kubernetes-validate package (a dev dependency), so nothing is downloaded.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml  # type: ignore[import-untyped]
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric

from alerts.policy import Condition, Level, OpenAlert, PatientAlerts
from streams.metrics import MAX_CARE_TEAMS, Metrics
from streams.outage import Backoff, KafkaWatch, RedisOutage
from streams.settings import Settings
from twin_state import kalman
from twin_state.profile import Profile, Status
from twin_state.twin import Quality, Twin, VitalState

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

# --- helpers shared with tests/integration/test_prometheus.py ---------------------------------------------------

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
    return sample_names(registry.collect())


# --- promtool ------------------------------------------------------------------------------------------------


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


# --- Grafana ----------------------------------------------------------------------------------------------------


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


# --- Kubernetes -------------------------------------------------------------------------------------------------


def k8s_documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def all_k8s() -> list[tuple[str, dict[str, Any]]]:
    return [(p.name, d) for p in sorted(K8S_DIR.glob("*.yaml")) for d in k8s_documents(p)]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_k8s_manifests_validate_against_the_kubernetes_schemas_offline(version: str) -> None:
    documents = all_k8s()
    problems = []
    for name, doc in documents:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as exc:
            problems.append(f"{name} {doc.get('kind')}/{doc.get('metadata', {}).get('name')}: {exc}")
    assert problems == []
    kinds = {d["kind"] for _, d in documents}
    assert {"Namespace", "ConfigMap", "Secret", "Deployment", "StatefulSet", "Service", "Job",
            "PodDisruptionBudget"} <= kinds


def test_k8s_validation_rejects_a_broken_manifest() -> None:
    deployment = next(d for _, d in all_k8s() if d["kind"] == "Deployment")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["prot"] = "metrics"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


def test_k8s_worker_has_probes_resources_config_and_secrets_that_exist() -> None:
    docs = all_k8s()
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for _, d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    worker = next(d for d in by_kind["Deployment"] if d["metadata"]["name"] == "twinmon-worker")
    config = next(d for d in by_kind["ConfigMap"] if d["metadata"]["name"] == "twinmon")
    secret = next(d for d in by_kind["Secret"] if d["metadata"]["name"] == "twinmon")
    known = {f"TWINMON_{name.upper()}" for name in Settings.model_fields}
    assert set(config["data"]) <= known, set(config["data"]) - known
    assert config["data"]["TWINMON_METRICS_HOST"] == "0.0.0.0"  # noqa: S104 - probes and Prometheus reach it

    assert worker["spec"]["replicas"] >= 2
    pod = worker["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    port = int(config["data"]["TWINMON_METRICS_PORT"])
    assert [p["containerPort"] for p in container["ports"] if p["name"] == "metrics"] == [port]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    # /metrics needs the bearer token, which the kubelet does not send: the probes use the open paths.
    for probe, path in (("startupProbe", "/healthz"), ("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        assert container[probe]["httpGet"] == {"path": path, "port": "metrics"}, probe
    assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
    assert container["resources"]["limits"]["memory"]
    assert container["envFrom"] == [{"configMapRef": {"name": "twinmon"}}]
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    plain = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert set(env) <= known and set(plain) <= known
    # The only setting outside the ConfigMap that is not secret: the policy file, mounted in this pod only.
    assert set(plain) == {"TWINMON_POLICY_FILE"}
    assert "TWINMON_REDIS_URL" in env and "TWINMON_REDIS_URL" not in config["data"]
    secret_keys = set(secret["stringData"])
    for ref in env.values():
        assert ref["name"] == "twinmon" and ref["key"] in secret_keys, ref
    for volume in pod["spec"]["volumes"]:
        if "secret" in volume:
            assert {i["key"] for i in volume["secret"]["items"]} <= secret_keys
    assert container["args"] == ["worker"]

    # Prometheus finds every worker pod through the headless Service, ready or not, on the metrics port.
    scrape = yaml.safe_load(next(d for d in by_kind["ConfigMap"] if d["metadata"]["name"] == "twinmon-prometheus")
                            ["data"]["prometheus.yml"])
    job = next(j for j in scrape["scrape_configs"] if j["job_name"] == WORKER_JOB)
    headless = next(d for d in by_kind["Service"] if d["metadata"]["name"] == "twinmon-worker")
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    assert headless["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert [p["targetPort"] for p in headless["spec"]["ports"]] == ["metrics"]
    (sd,) = job["dns_sd_configs"]
    namespace = headless["metadata"]["namespace"]
    assert sd["names"] == [f"twinmon-worker.{namespace}.svc.cluster.local"] and sd["port"] == port
    assert any(r.get("target_label") == "env" for r in job["relabel_configs"])
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"

    redis = next(d for d in by_kind["StatefulSet"] if d["metadata"]["name"] == "twinmon-redis")
    service = next(d for d in by_kind["Service"] if d["metadata"]["name"] == "twinmon-redis")
    assert redis["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["selector"].items() <= redis["spec"]["template"]["metadata"]["labels"].items()
    assert redis["spec"]["volumeClaimTemplates"]
    assert "@twinmon-redis:6379/" in secret["stringData"]["redis-url"]


@pytest.mark.parametrize(("deployment", "service"), [("twinmon-worker", "worker"), ("twinmon-feed", "feed")])
def test_workers_and_feed_run_the_shipped_policy_file_in_k8s_and_compose(deployment: str, service: str) -> None:
    shipped = (DEPLOY / "policy" / "default.toml").read_text()
    docs = all_k8s()
    found = next(d for _, d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == deployment)
    pod = found["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    path = Path(next(e["value"] for e in container["env"] if e["name"] == "TWINMON_POLICY_FILE"))
    (mount,) = [m for m in container["volumeMounts"] if Path(m["mountPath"]) == path.parent]
    assert mount.get("readOnly") is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    maps = {d["metadata"]["name"]: d for _, d in docs if d["kind"] == "ConfigMap"}
    policy_map = maps[volume["configMap"]["name"]]
    assert policy_map["metadata"]["namespace"] == found["metadata"]["namespace"]
    assert policy_map["data"][path.name] == shipped, "deploy/k8s/policy.yaml's copy differs from deploy/policy"

    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    svc = compose["services"][service]
    in_container = Path(svc["environment"]["TWINMON_POLICY_FILE"])
    mounts = {Path(c): DEPLOY / h for h, c, *_ in (v.split(":") for v in svc["volumes"] if v.startswith("./"))}
    assert (mounts[in_container.parent] / in_container.name).read_text() == shipped
    assert svc["environment"]["TWINMON_KAFKA_BOOTSTRAP"] == "kafka:9092"  # the shared settings still apply


def test_k8s_feed_has_probes_its_own_redis_url_tokens_and_a_service() -> None:
    docs = all_k8s()
    find = {(d["kind"], d["metadata"]["name"]): d for _, d in docs}
    feed, service = find[("Deployment", "twinmon-feed")], find[("Service", "twinmon-feed")]
    secret, config = find[("Secret", "twinmon")], find[("ConfigMap", "twinmon")]
    pod = feed["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["args"] == ["serve"] and feed["spec"]["replicas"] >= 2
    assert [p["containerPort"] for p in container["ports"] if p["name"] == "http"] == [Settings().api_port]
    assert "TWINMON_API_PORT" not in config["data"] or int(config["data"]["TWINMON_API_PORT"]) == Settings().api_port
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    known = {f"TWINMON_{name.upper()}" for name in Settings.model_fields}
    env = {e["name"]: e for e in container["env"]}
    assert set(env) <= known
    assert env["TWINMON_API_HOST"]["value"] == "0.0.0.0"  # noqa: S104 - behind the Service
    assert env["TWINMON_REDIS_URL"]["valueFrom"]["secretKeyRef"]["key"] == "feed-redis-url"
    for e in env.values():
        if "valueFrom" in e:
            assert e["valueFrom"]["secretKeyRef"]["key"] in secret["stringData"], e
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    tokens = next(v for v in pod["spec"]["volumes"] if v["name"] == "tokens")
    (item,) = tokens["secret"]["items"]
    assert item["key"] in secret["stringData"] and json.loads(secret["stringData"][item["key"]])["tokens"] == []
    assert env["TWINMON_TOKENS_FILE"]["value"] == f"{mounts['tokens']}/{item['path']}"
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


# --- the metrics page -------------------------------------------------------------------------------------------


def vital(updated_at: int) -> VitalState:
    return VitalState(kalman.start(70.0, 25.0, 1.0), updated_at, 1, 70.0, updated_at, "d-1")


def resident(pid: str, last_ms: int | None, team: str | None, *, discharged: bool = False,
             open_levels: tuple[Level, ...] = ()) -> tuple[Twin, PatientAlerts, Profile | None]:
    from twin_state.catalogue import Metric

    vitals = {Metric.HEART_RATE: vital(last_ms)} if last_ms is not None else {}
    twin = Twin(pid, vitals=vitals, quality={Metric.HEART_RATE: Quality(8.0, 10.0, last_ms or 0)} if vitals else {})
    conditions = list(Condition)
    opened = {conditions[i]: OpenAlert(f"a-{pid}-{i}", conditions[i], level, 0, 0, 1)
              for i, level in enumerate(open_levels)}
    profile = None if team is None else Profile(pid, team, 0, Status.DISCHARGED if discharged else Status.ENROLLED)
    return twin, PatientAlerts(pid, opened), profile


def test_census_counts_open_alerts_stale_and_monitored_patients_per_care_team() -> None:
    now = 10_000_000
    limit = 15 * 60_000
    metrics = Metrics(CollectorRegistry())
    residents = [
        resident("p1", now - 1000, "ward-7", open_levels=(Level.HIGH,)),
        resident("p2", now - limit, "ward-7", open_levels=(Level.MEDIUM, Level.LOW)),
        resident("p3", None, None),
        resident("p4", now - 5, "ward-9", discharged=True, open_levels=(Level.HIGH,)),
    ]
    asyncio.run(metrics.census(residents, now, limit))
    value = metrics.registry.get_sample_value
    assert value("twinmon_patients_monitored", {"care_team": "ward-7"}) == 2
    assert value("twinmon_patients_stale", {"care_team": "ward-7"}) == 1
    assert value("twinmon_patients_monitored", {"care_team": "unassigned"}) == 1
    assert value("twinmon_patients_stale", {"care_team": "unassigned"}) == 1
    assert value("twinmon_patients_monitored", {"care_team": "ward-9"}) is None  # discharged: not monitored
    assert value("twinmon_readings_recent", {"care_team": "ward-7"}) == 20
    assert value("twinmon_readings_recent_accepted", {"care_team": "ward-7"}) == 16
    assert value("twinmon_alerts_open", {"condition": "clinical", "level": "high"}) == 2
    assert value("twinmon_alerts_open", {"condition": "no_data", "level": "low"}) == 1
    assert value("twinmon_alerts_open", {"condition": "clinical", "level": "medium"}) == 1
    assert value("twinmon_alerts_open", {"condition": "signal_quality", "level": "low"}) == 0
    assert value("twinmon_twins_resident") == 4

    # A care team that has no resident patient any more disappears from the page.
    asyncio.run(metrics.census(residents[2:], now, limit))
    assert value("twinmon_patients_monitored", {"care_team": "ward-7"}) is None
    assert value("twinmon_alerts_open", {"condition": "clinical", "level": "high"}) == 1


def test_metrics_page_stays_small_at_100000_patients_and_carries_no_patient_ids() -> None:
    now = 10_000_000
    metrics = Metrics(CollectorRegistry())
    residents = [resident(f"patient-{i:06d}", now - (i % 3) * 600_000, f"ward-{i % 300:03d}" if i % 7 else None,
                          open_levels=(Level.HIGH,) if i % 50 == 0 else ())
                 for i in range(100_000)]
    asyncio.run(metrics.census(residents, now, 15 * 60_000))
    for p in range(24):
        metrics.consumer_lag.labels("vitals", str(p)).set(p)
    for level in ("low", "medium", "high"):
        metrics.time_to_acknowledge.labels(level).observe(60)
    page = generate_latest(metrics.registry).decode()
    teams = set(re.findall(r'care_team="([^"]*)"', page))
    assert len(teams) == MAX_CARE_TEAMS and "other" in teams and "unassigned" in teams
    assert len(page.encode()) < 64 * 1024, len(page.encode())
    assert page.count("\n") < 1000
    assert "patient-" not in page
    total = sum(metrics.registry.get_sample_value("twinmon_patients_monitored", {"care_team": t}) or 0 for t in teams)
    assert total == 100_000  # nothing lost by folding the smallest teams into "other"


def test_metric_names_follow_the_conventions_and_labels_carry_no_patient_data() -> None:
    metrics = Metrics(CollectorRegistry())
    for family in metrics.registry.collect():
        assert family.name.startswith(("twinmon_", "process_")), family.name
        if family.type == "histogram" and family.name != "twinmon_batch_size":
            assert family.name.endswith("_seconds"), family.name
    forbidden = {"patient", "patient_id", "value", "device", "device_id", "user", "alert_id"}
    for attr in vars(metrics).values():
        if isinstance(attr, MetricWrapperBase):
            assert not set(attr._labelnames) & forbidden, attr
    page = generate_latest(metrics.registry).decode()
    assert re.search(r'^twinmon_build_info\{version="[^"]+"\} 1\.0$', page, re.M)
    assert "process_start_time_seconds" in page
