"""Kubernetes manifests validated against the Kubernetes JSON schemas offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml  # type: ignore[import-untyped]

from streams.settings import Settings
from tests.support.ops import DEPLOY, K8S_VERSIONS, WORKER_JOB, all_k8s


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
