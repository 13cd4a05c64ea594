"""The Kubernetes manifests' security: TLS required, one Kafka principal and one Redis user per workload, Redis
with TLS and ACL users and no password on a command line, network policies that deny by default, and metrics behind
a token that Prometheus sends. (Schemas: test_k8s_manifests.py; the ACLs themselves against a real broker:
tests/integration/test_kafka_acls.py; the Redis configuration against a real Redis: test_redis_acl.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from streams.kafka_acls import load
from streams.settings import Settings
from tests.support.ops import DEPLOY, WORKER_JOB, all_k8s

WORKLOADS = {("Deployment", "twinmon-worker"): "worker", ("Deployment", "twinmon-feed"): "feed",
             ("Job", "twinmon-topics"): "topics"}


def find() -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for _, d in all_k8s()}


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def environment(workload: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
    """The container's TWINMON_* settings: the ConfigMap, its own values, and the example Secret's values."""
    docs = find()
    secret = docs[("Secret", "twinmon")]["stringData"]
    env = {}
    for source in container.get("envFrom", []):
        env.update(docs[("ConfigMap", source["configMapRef"]["name"])]["data"])
    for e in container.get("env", []):
        env[e["name"]] = e["value"] if "value" in e else secret[e["valueFrom"]["secretKeyRef"]["key"]]
    return env


def mounted(workload: dict[str, Any], container: dict[str, Any], path: str) -> bool:
    volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
    for m in container.get("volumeMounts", []):
        if Path(path).parent == Path(m["mountPath"]):
            items = volumes[m["name"]].get("secret", volumes[m["name"]].get("configMap", {})).get("items")
            return items is None or Path(path).name in {i["path"] for i in items}
    return False


def test_every_workload_requires_tls_and_its_settings_pass_with_it() -> None:
    docs = find()
    assert docs[("ConfigMap", "twinmon")]["data"]["TWINMON_REQUIRE_TLS"] == "true"
    for key in WORKLOADS:
        for container in containers(docs[key]):
            env = environment(docs[key], container)
            settings = Settings(**{k[len("TWINMON_"):].lower(): v for k, v in env.items()})  # type: ignore[arg-type]
            assert settings.require_tls and settings.kafka_security_protocol == "SASL_SSL"
            assert settings.redis_url.get_secret_value().startswith("rediss://")
            assert settings.kafka_ssl_cafile and mounted(docs[key], container, settings.kafka_ssl_cafile), key
            if container["name"] != "acls" and key[0] == "Deployment":  # the ones that use Redis trust its CA
                assert settings.redis_ssl_cafile and mounted(docs[key], container, settings.redis_ssl_cafile), key


def test_each_workload_has_its_own_kafka_principal_from_the_acl_file() -> None:
    docs = find()
    users = load(DEPLOY / "kafka-acls.toml").users()
    seen: dict[str, str] = {}
    for key, role in WORKLOADS.items():
        for container in containers(docs[key]):
            refs = {e["name"]: e["valueFrom"]["secretKeyRef"]["key"] for e in container["env"] if "valueFrom" in e}
            assert environment(docs[key], container)["TWINMON_KAFKA_SASL_USERNAME"] == users[role], key
            password_key = refs["TWINMON_KAFKA_SASL_PASSWORD"]
            assert seen.setdefault(password_key, role) == role, f"{role} shares {password_key}"
    assert len(set(seen.values())) == len(WORKLOADS)


def test_the_topics_job_applies_the_shipped_acl_file_before_it_creates_the_topics() -> None:
    docs = find()
    job = docs[("Job", "twinmon-topics")]
    acls_map = docs[("ConfigMap", "twinmon-kafka-acls")]
    assert acls_map["data"]["kafka-acls.toml"] == (DEPLOY / "kafka-acls.toml").read_text()
    (init,) = job["spec"]["template"]["spec"]["initContainers"]
    (main,) = job["spec"]["template"]["spec"]["containers"]
    assert init["args"][:3] == ["topics", "acls", "--file"] and main["args"] == ["topics", "create"]
    assert mounted(job, init, init["args"][3])
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["acls"]["configMap"]["name"] == "twinmon-kafka-acls"


def test_redis_runs_tls_only_with_acl_users_from_a_secret_and_no_password_on_a_command_line() -> None:
    docs = find()
    redis = docs[("StatefulSet", "twinmon-redis")]
    (container,) = redis["spec"]["template"]["spec"]["containers"]
    assert "env" not in container and "envFrom" not in container  # no password in its environment either
    words = " ".join(container["args"])
    assert "requirepass" not in words and "$(" not in words
    conf_path = Path(container["args"][1])
    conf = docs[("ConfigMap", "twinmon-redis")]["data"][conf_path.name]
    lines = dict(line.split(" ", 1) for line in conf.splitlines() if line.strip())
    assert lines["port"] == "0" and lines["tls-port"] == "6379"  # no plaintext port
    assert "requirepass" not in lines
    for key in ("aclfile", "tls-cert-file", "tls-key-file", "tls-ca-cert-file"):
        assert mounted(redis, container, lines[key]), key
    assert mounted(redis, container, str(conf_path))
    volumes = {v["name"]: v for v in redis["spec"]["template"]["spec"]["volumes"]}
    acl_mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(Path(lines["aclfile"]).parent))
    assert volumes[acl_mount["name"]]["secret"]["secretName"] == "twinmon-redis"
    for probe in ("readinessProbe", "livenessProbe"):
        command = " ".join(container[probe]["exec"]["command"])
        assert "--tls" in command and "--user health" in command and "REDISCLI_AUTH" not in command
    secret = docs[("Secret", "twinmon")]["stringData"]
    assert "redis-password" not in secret
    assert secret["redis-url"].startswith("rediss://twinmon:")
    assert secret["feed-redis-url"].startswith("rediss://twinmon-feed:")


def test_network_policies_deny_by_default_and_open_only_the_needed_paths() -> None:
    docs = find()
    policies = {name: d["spec"] for (kind, name), d in docs.items() if kind == "NetworkPolicy"}
    deny = policies["default-deny"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}  # no rule: nothing allowed

    def selects(spec: dict[str, Any], labels: dict[str, str]) -> bool:
        return spec["podSelector"].get("matchLabels", {}).items() <= labels.items()

    def ingress_ports(labels: dict[str, str]) -> set[Any]:
        return {p["port"] for spec in policies.values() if selects(spec, labels)
                for rule in spec.get("ingress", []) for p in rule["ports"]}

    pods = {name: d["spec"]["template"]["metadata"]["labels"] for (kind, name), d in docs.items()
            if kind in ("Deployment", "StatefulSet", "Job")}
    assert ingress_ports(pods["twinmon-worker"]) == {"metrics"}
    assert ingress_ports(pods["twinmon-feed"]) == {"http"}
    assert ingress_ports(pods["twinmon-redis"]) == {"redis"}
    assert ingress_ports(pods["twinmon-topics"]) == set()
    redis_from = [peer["podSelector"]["matchLabels"] for rule in policies["twinmon-redis"]["ingress"]
                  for peer in rule["from"]]
    assert redis_from == [{"app.kubernetes.io/name": "twinmon-worker"}, {"app.kubernetes.io/name": "twinmon-feed"}]
    for name in ("twinmon-worker", "twinmon-feed"):
        egress = policies[name]["egress"]
        assert sorted(p["port"] for rule in egress for p in rule["ports"]) == [6379, 9093]
    assert [p["port"] for rule in policies["twinmon-topics"]["egress"] for p in rule["ports"]] == [9093]
    # Named ports in the policies are the containers' own.
    for name, port in (("twinmon-worker", "metrics"), ("twinmon-feed", "http")):
        (container,) = docs[("Deployment", name)]["spec"]["template"]["spec"]["containers"]
        assert port in {p["name"] for p in container["ports"]}


def test_worker_metrics_need_a_token_that_prometheus_sends() -> None:
    docs = find()
    worker = docs[("Deployment", "twinmon-worker")]
    (container,) = containers(worker)
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"]["key"] for e in container["env"] if "valueFrom" in e}
    assert refs["TWINMON_METRICS_TOKEN"] in docs[("Secret", "twinmon")]["stringData"]
    scrape = yaml.safe_load(docs[("ConfigMap", "twinmon-prometheus")]["data"]["prometheus.yml"])
    job = next(j for j in scrape["scrape_configs"] if j["job_name"] == WORKER_JOB)
    assert job["authorization"]["type"] == "Bearer" and job["authorization"]["credentials_file"]
