"""Session fixtures: the real local Kafka broker and Redis, started by the project's own deploy/local scripts."""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.support.feed_helpers import ApiProcess

ROOT = Path(__file__).resolve().parents[1]
LOCAL = ROOT / "deploy" / "local"
TWINMON = str(Path(sys.executable).parent / "twinmon")


@dataclass(frozen=True)
class Services:
    bootstrap: str
    redis_url: str
    kafka_state: Path
    redis_state: Path


def _start(script: str, state: Path) -> str:
    out = subprocess.run(["bash", str(LOCAL / script), "start", str(state)], check=False, capture_output=True,
                         text=True, timeout=300)
    if out.returncode != 0:
        pytest.fail(f"{script} start failed:\n{out.stderr[-4000:]}")
    return out.stdout.strip().splitlines()[-1]


def _stop(script: str, state: Path) -> None:
    subprocess.run(["bash", str(LOCAL / script), "stop", str(state)], check=False, capture_output=True, timeout=120)


SHARED = "twinmon_shared_services"
"""Under pytest-xdist (``make test`` runs ``-n``), the key of ``workerinput`` naming the directory of the one broker
and Redis that every worker process shares; the controller process stops them when the run ends."""


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """(pytest-xdist, in the controller) every worker gets the same services directory."""
    config = node.config
    if not hasattr(config, "_twinmon_shared"):
        config._twinmon_shared = Path(tempfile.mkdtemp(prefix="twinmon-services-"))
    node.workerinput[SHARED] = str(config._twinmon_shared)


def pytest_unconfigure(config: pytest.Config) -> None:
    shared: Path | None = getattr(config, "_twinmon_shared", None)
    if shared is not None:
        _stop("kafka.sh", shared / "kafka")
        _stop("redis.sh", shared / "redis")
        shutil.rmtree(shared, ignore_errors=True)


@pytest.fixture(scope="session")
def services(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """One Kafka broker and one Redis for the session; every test isolates itself on them (``new_deployment``: own
    topics, consumer group and key prefix). Under pytest-xdist the worker processes share one broker and one Redis:
    the first to need them starts them (``kafka.sh start`` on a running state dir only prints its address), and the
    controller stops them at the end, after every worker is done."""
    shared = getattr(request.config, "workerinput", {}).get(SHARED)
    if shared is None:
        kafka_state = tmp_path_factory.mktemp("kafka")
        redis_state = tmp_path_factory.mktemp("redis")
        try:
            bootstrap = _start("kafka.sh", kafka_state)
            redis_url = _start("redis.sh", redis_state)
            yield Services(bootstrap, redis_url, kafka_state, redis_state)
        finally:
            _stop("kafka.sh", kafka_state)
            _stop("redis.sh", redis_state)
        return
    kafka_state, redis_state = Path(shared) / "kafka", Path(shared) / "redis"
    with (Path(shared) / "start.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one worker starts them; the others wait, then find them running
        kafka_state.mkdir(exist_ok=True)
        redis_state.mkdir(exist_ok=True)
        bootstrap = _start("kafka.sh", kafka_state)
        redis_url = _start("redis.sh", redis_state)
    yield Services(bootstrap, redis_url, kafka_state, redis_state)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def cluster_url(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real one-node Redis Cluster (tests/support/redis_cluster.py), after ``services`` has installed
    redis-server; shared by tests/integration/test_redis_cluster.py and tests/e2e/test_redis_cluster_worker.py."""
    from tests.support.redis_cluster import one_node_cluster

    with one_node_cluster(tmp_path_factory.mktemp("redis-cluster"), free_port) as url:
        yield url


@dataclass
class Deployment:
    """One isolated twinmon installation on the shared services: its own topics, group and Redis prefix."""

    env: dict[str, str]
    tmp: Path

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([TWINMON, *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                             check=False)
        if check and out.returncode != 0:
            raise AssertionError(f"twinmon {' '.join(args)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
        return out

    def start_worker(self, name: str = "worker", **overrides: str) -> WorkerProcess:
        port = free_port()
        env = {**self.env, "TWINMON_METRICS_PORT": str(port), "TWINMON_DATA_DIR": str(self.tmp / f"{name}-data"),
               **overrides}
        log = (self.tmp / f"{name}.log").open("ab")
        proc = subprocess.Popen([TWINMON, "worker"], env=env, stdout=log, stderr=subprocess.STDOUT)
        return WorkerProcess(proc, f"http://127.0.0.1:{port}/metrics", self.tmp / f"{name}.log")

    def start_api(self, name: str = "api", **overrides: str) -> ApiProcess:
        from tests.support.feed_helpers import ApiProcess

        port = free_port()
        env = {**self.env, "TWINMON_API_PORT": str(port), "TWINMON_LOG_LEVEL": "info", **overrides}
        log = (self.tmp / f"{name}.log").open("ab")
        proc = subprocess.Popen([TWINMON, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
        api = ApiProcess(proc, f"http://127.0.0.1:{port}", self.tmp / f"{name}.log")
        api.wait_ready()
        return api

    def token(self, user: str, team: str) -> str:
        return self.run("token", "issue", "--user", user, "--team", team).stdout.strip()

    @property
    def topic_vitals(self) -> str:
        return self.env["TWINMON_TOPIC_VITALS"]


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[bytes]
    metrics_url: str
    log: Path

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        from prometheus_client.parser import text_string_to_metric_families

        try:
            with urllib.request.urlopen(self.metrics_url, timeout=2) as resp:  # noqa: S310 - our own http URL
                text = resp.read().decode()
        except OSError:
            return None
        total = None
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in (labels or {}).items()):
                    total = (total or 0.0) + s.value
        return total

    def wait_for(self, name: str, at_least: float, timeout: float = 90.0) -> float:
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log.read_text()[-4000:]}")
            value = self.metric(name)
            if value is not None and value >= at_least:
                return value
            time.sleep(0.2)
        raise AssertionError(f"{name} reached {value}, not {at_least}, in {timeout}s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def deployment(services: Services, tmp_path: Path) -> Iterator[Deployment]:
    yield new_deployment(services.bootstrap, services.redis_url, tmp_path)


def new_deployment(bootstrap: str, redis_url: str, tmp_path: Path) -> Deployment:
    """An isolated installation (own topics, group, prefix) on the given broker and Redis, topics created."""
    tag = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "TWINMON_KAFKA_BOOTSTRAP": bootstrap,
        "TWINMON_REDIS_URL": redis_url,
        "TWINMON_REDIS_PREFIX": f"t{tag}",
        "TWINMON_APP_ID": f"twinmon-{tag}",
        "TWINMON_TOPIC_VITALS": f"vitals-{tag}",
        "TWINMON_TOPIC_DLQ": f"vitals-{tag}.dlq",
        "TWINMON_TOPIC_ALERTS": f"alerts-{tag}",
        "TWINMON_TOPIC_ENROLMENTS": f"enrolments-{tag}",
        "TWINMON_TOPIC_ALERT_ACTIONS": f"alert-actions-{tag}",
        "TWINMON_TOPIC_AUDIT": f"audit-{tag}",
        "TWINMON_TOKENS_FILE": str(tmp_path / "tokens.json"),
        "TWINMON_PARTITIONS": "4",
        "TWINMON_LOG_LEVEL": "warning",
        "TWINMON_AUDIT_KEY": f"test-audit-key-{uuid.uuid4().hex}",
    }
    dep = Deployment(env, tmp_path)
    dep.run("topics", "create")
    return dep


SPREAD = frozenset({"tests/e2e/test_faults.py", "tests/e2e/test_alerts.py", "tests/e2e/test_pipeline.py"})
"""Modules whose tests have only function-scoped fixtures of their own and take minutes each: under pytest-xdist
each of their tests is scheduled alone. Every other module's tests run together on one worker process (as
``--dist loadfile``), so a module-scoped fixture (a secure broker, Prometheus, a registry) is set up once."""


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    # (Not --dist loadgroup with xdist_group marks: pytest-xdist 3.8 tags a test's node id by assigning
    # item._nodeid, which pytest 9 no longer reads, so the groups never reach the scheduler.)
    if config.getvalue("dist") != "load":  # an explicit --dist other than the default is obeyed
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByModule(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return nodeid if module in SPREAD else module

    return ByModule(config, log)
