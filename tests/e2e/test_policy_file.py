"""A real worker started with TWINMON_POLICY_FILE runs that file's thresholds and names it: every alert event on the
real alerts topic carries the file's policy id, the events are those the offline processing gives under the same
file (not under the defaults), the stored alert state, `twinmon twin show` and the care-team feed's patient view
and alert history carry the id, and the worker exports it as twinmon_policy_info."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import orjson
import pytest

from alerts.config import AlertingConfig, load_config, policy_id
from alerts.policy import AlertEvent
from simulation.simulator import simulate
from streams.processor import BatchProcessor, RawMessage
from streams.schema import encode
from tests.conftest import Deployment, Services
from tests.support.helpers import consume_all, produce
from twin_state.store import InMemoryTwinStore

pytestmark = pytest.mark.integration

POLICY = """\
name = "trial"
[policy]
persist_ms = 120000   # a level must hold 2 min, not 30 s, before it is raised
"""


def offline(messages: list[tuple[bytes, bytes]], evaluation: AlertingConfig) -> dict[str, AlertEvent]:
    events: list[AlertEvent] = []

    async def publish(batch: Sequence[AlertEvent]) -> None:
        events.extend(batch)

    raw = [RawMessage(0, i, k, v) for i, (k, v) in enumerate(messages)]
    asyncio.run(BatchProcessor(InMemoryTwinStore(), publish=publish, evaluation=evaluation)
                .process(raw, int(time.time() * 1000)))
    return {e.event_id: e for e in events}


def test_a_worker_runs_its_policy_file_and_stamps_its_id_on_every_alert_event(
    services: Services, deployment: Deployment, tmp_path: Path
) -> None:
    path = tmp_path / "trial.toml"
    path.write_text(POLICY)
    name, evaluation = load_config(path)
    pid = policy_id(evaluation)
    assert pid != policy_id(AlertingConfig())

    start = int(time.time() * 1000) - 3 * 3_600_000
    readings = simulate(6, 3 * 3600.0, rate=0.25, seed=31, start_ms=start, deteriorating_share=1.0)
    messages = [(r.patient_id.encode(), encode(r)) for _, r in readings]
    expected = offline(messages, evaluation)
    defaults = offline(messages, AlertingConfig())
    assert expected, "the cohort should raise alerts under the trial policy"
    # The check can fail: under the defaults the same stream gives other events (raised earlier).
    assert {(i, e.at) for i, e in expected.items()} != {(i, e.at) for i, e in defaults.items()}

    patients = sorted({e.patient_id for e in expected.values()})
    for pid_ in patients:
        deployment.run("enrol", pid_, "--team", "ward-7")
    nurse = deployment.token("nurse-17", "ward-7")
    produce(services.bootstrap, deployment.topic_vitals, messages)
    worker = deployment.start_worker(TWINMON_POLICY_FILE=str(path))
    api = None
    try:
        records = consume_all(services.bootstrap, deployment.env["TWINMON_TOPIC_ALERTS"], len(expected), 120)
        by_id = {d["event_id"]: d for d in (orjson.loads(r.value) for r in records)}
        assert set(by_id) == set(expected)
        assert {d["policy_id"] for d in by_id.values()} == {pid}
        assert all(d["at"] == expected[i].at and d["kind"] == expected[i].kind.value for i, d in by_id.items())

        assert worker.wait_for("twinmon_policy_info", 1) == 1
        assert worker.metric("twinmon_policy_info", {"policy_id": pid, "name": name}) == 1
        assert f"policy: {pid} (trial) from {path}" in worker.log.read_text()

        patient = patients[0]
        deadline = time.monotonic() + 30
        while f"policy {pid}" not in (shown := deployment.run("twin", "show", patient).stdout):
            assert time.monotonic() < deadline, shown
            time.sleep(0.5)

        # twin show judges staleness by the policy file's limits, as risk does
        strict = tmp_path / "strict.toml"
        strict.write_text("[risk.stale_after_ms]\nheart_rate = 1\n")
        rows = {line.split()[0]: line for line in shown.splitlines() if line.split()}
        assert "STALE" not in rows["heart_rate"]
        strict_show = Deployment({**deployment.env, "TWINMON_POLICY_FILE": str(strict)}, tmp_path)
        rows = {line.split()[0]: line for line in strict_show.run("twin", "show", patient).stdout.splitlines()
                if line.split()}
        assert rows["heart_rate"].endswith("STALE") and "STALE" not in rows["resp_rate"]

        # The care-team feed's patient view and alert history carry the id (responses checked against the spec).
        api = deployment.start_api(TWINMON_POLICY_FILE=str(path))
        view = api.call("GET", "/api/patients/{patient_id}", nurse, path={"patient_id": patient}, expect=200).json()
        assert view["policy_id"] == pid
        deadline = time.monotonic() + 30
        while not (items := api.call("GET", "/api/patients/{patient_id}/alerts", nurse,
                                     path={"patient_id": patient}, expect=200).json()["items"]):
            assert time.monotonic() < deadline, "the feed never indexed the patient's alert events"
            time.sleep(0.5)
        assert {i["policy_id"] for i in items} == {pid}
    finally:
        if api is not None:
            api.stop()
        worker.stop()
