"""The worker, the CLI and the feed on a real Redis Cluster (``TWINMON_REDIS_CLUSTER=true``): the same twins as the
offline replay, read back through the cluster; every alert event of the offline run once by id; an
acknowledgement stored; the care-team feed serving the team's patients, alerts and audit records from it.

The cluster is one node holding every slot (the session's ``cluster_url``, tests/support/redis_cluster.py), which
refuses any script call or multi-key command whose keys span slots, as a big cluster does.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from redis.asyncio import RedisCluster

from simulation.simulator import simulate
from streams.schema import encode
from tests.conftest import Services, new_deployment
from tests.e2e.test_alerts import offline_event_ids
from tests.support.helpers import consume_all, load_twins, produce, replay_twins, twin_differences
from twin_state.profile import Profile
from twin_state.redis_store import RedisProfileStore

pytestmark = pytest.mark.integration

HOURS = 2
TEAM = "ward-c"
ENROLLED = [f"sim-{i:06d}" for i in range(4)]


def cohort() -> list[tuple[bytes, bytes]]:
    """8 patients, half of them deteriorating: about 5,500 readings, a few dozen alert events (seed 31)."""
    start = int(time.time() * 1000) - HOURS * 3_600_000
    readings = simulate(8, HOURS * 3600.0, rate=0.1, seed=31, start_ms=start, deteriorating_share=0.5)
    return [(r.patient_id.encode(), encode(r)) for _, r in readings]


def stored_profiles(cluster_url: str, prefix: str, patient_ids: list[str]) -> dict[str, Profile]:
    async def go() -> dict[str, Profile]:
        client = RedisCluster.from_url(cluster_url)
        try:
            return await RedisProfileStore(client, prefix).get_many(patient_ids)  # type: ignore[arg-type]
        finally:
            await client.aclose()

    return asyncio.run(go())


def eventually(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f} s"
        time.sleep(0.3)


def test_worker_cli_and_feed_on_a_redis_cluster(services: Services, cluster_url: str, tmp_path: Path) -> None:
    deployment = new_deployment(services.bootstrap, cluster_url, tmp_path)
    deployment.env["TWINMON_REDIS_CLUSTER"] = "true"
    prefix = deployment.env["TWINMON_REDIS_PREFIX"]
    messages = cohort()
    for pid in ENROLLED:  # profiles on the patients' slots, the team's set on another
        deployment.run("enrol", pid, "--team", TEAM)
    expected_events = offline_event_ids(messages)
    assert expected_events, "the cohort should raise alerts"

    worker = deployment.start_worker()
    try:
        # The enrolments and the vitals are separate topics the worker reads concurrently: the vitals are produced
        # once the profiles are stored, so every alert event of an enrolled patient is one with its team (with the
        # vitals already waiting, an early event could carry no team, as seen on a loaded machine).
        eventually("the enrolled profiles stored on the cluster",
                   lambda: set(stored_profiles(cluster_url, prefix, ENROLLED)) == set(ENROLLED), timeout=90)
        produce(services.bootstrap, deployment.topic_vitals, messages)
        worker.wait_for("twinmon_events_consumed_total", len(messages), timeout=180)
        expected = replay_twins([v for _, v in messages], int(time.time() * 1000))
        assert len(expected) == 8
        deadline = time.monotonic() + 60
        problems = ["not checked"]
        while problems and time.monotonic() < deadline:
            problems = twin_differences(load_twins(cluster_url, prefix, sorted(expected), cluster=True), expected)
            time.sleep(0.3)
        assert problems == []

        records = consume_all(services.bootstrap, deployment.env["TWINMON_TOPIC_ALERTS"], len(expected_events), 60)
        by_id = {e["event_id"]: e for e in (orjson.loads(r.value) for r in records)}
        assert set(by_id) == expected_events
        assert {e["care_team"] for e in by_id.values() if e["patient_id"] in ENROLLED} == {TEAM}

        # Health on the cluster client: Redis up, ready.
        assert worker.metric("twinmon_redis_up") == 1
        with urllib.request.urlopen(worker.metrics_url.replace("/metrics", "/readyz"), timeout=5) as ready:  # noqa: S310
            assert ready.status == 200 and ready.read().strip() == b"ok"

        # The CLI reads through the cluster, and an acknowledgement comes back as stored alert state (one script
        # call per patient: a cluster pipeline takes none).
        pid, alert_id = None, None
        for candidate in ENROLLED:
            listing = deployment.run("alert", "list", candidate).stdout
            if "NOT acknowledged" in listing:
                pid, alert_id = candidate, listing.split()[0]
                break
        assert pid is not None and alert_id is not None, "no open, unacknowledged alert to act on"
        assert pid in deployment.run("twin", pid).stdout
        deployment.run("alert", "ack", pid, alert_id, "--user", "nurse-3")
        eventually("the acknowledgement reaches the stored alert",
                   lambda: "acknowledged by nurse-3" in deployment.run("alert", "list", pid).stdout)
        deployment.run("profiles", "reconcile")

        # The feed on the cluster: the team's set, profiles and twins, its own alert-history and audit indexes.
        api = deployment.start_api()
        try:
            token = deployment.token("nurse-3", TEAM)
            listed = api.call("GET", "/api/patients", token, expect=200).json()
            assert sorted(p["patient_id"] for p in listed) == ENROLLED
            theirs = {e for e, v in by_id.items() if v["patient_id"] == pid}

            def history() -> set[str]:
                page = api.call("GET", "/api/patients/{patient_id}/alerts", token, path={"patient_id": pid},
                                expect=200).json()
                return {e["event_id"] for e in page["items"]}

            def enrolled_in_audit() -> set[str]:
                items = api.call("GET", "/api/audit", token, expect=200).json()["items"]
                return {r["patient_id"] for r in items if r["action"] == "enrol"}

            eventually("the feed indexes the patient's alert events", lambda: history() >= theirs)
            eventually("the feed indexes the enrolments' audit records", lambda: enrolled_in_audit() == set(ENROLLED))
        finally:
            api.stop()
        assert worker.proc.poll() is None
    finally:
        worker.stop()
    assert worker.proc.returncode == 0, worker.log.read_text()[-3000:]
