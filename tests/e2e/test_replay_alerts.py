"""`twinmon replay --alerts` against a real worker: the alert events the offline replay writes for a recorded log
are the events the worker publishes on the alerts topic for the same log, by id and in full; readings from the
future in that log are dead-lettered by the worker and refused by the replay, and change neither."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from tests.conftest import Deployment, Services
from tests.support.helpers import consume_all, produce

pytestmark = pytest.mark.integration

PATIENTS = 6
DURATION_S = 7200
AHEAD_MS = 20 * 3_600_000


def recorded_log(deployment: Deployment, path: Path) -> list[bytes]:
    """A simulated recording whose event time ends about now (the simulator's default start, so no gap for the
    worker's wall-clock no-data sweep), with one heart rate per patient from a second device stamped 20 h ahead
    an hour in."""
    deployment.run("simulate", "--patients", str(PATIENTS), "--duration", str(DURATION_S), "--rate", "0.25",
                   "--deteriorating", "1.0", "--seed", "13", "--out", str(path))
    lines = path.read_bytes().splitlines()
    first = orjson.loads(lines[0])["measured_at"]
    cut = next(i for i, line in enumerate(lines) if orjson.loads(line)["measured_at"] >= first + 3_600_000)
    at = orjson.loads(lines[cut])["measured_at"]
    liars = [orjson.dumps({"v": 1, "patient_id": f"sim-{i:06d}", "device_id": f"sim-{i:06d}-spare",
                           "metric": "heart_rate", "value": 80, "unit": "/min", "measured_at": at + AHEAD_MS,
                           "seq": 1}) for i in range(PATIENTS)]
    lines = lines[:cut] + liars + lines[cut:]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return lines


def test_replay_alerts_equal_the_live_workers_alert_events(services: Services, deployment: Deployment,
                                                           tmp_path: Path) -> None:
    log = tmp_path / "recorded.jsonl"
    lines = recorded_log(deployment, log)
    assert orjson.loads(lines[-1])["measured_at"] <= time.time() * 1000  # event time is in the past

    out = deployment.run("replay", "--input", str(log), "--output", str(tmp_path / "twins.jsonl"),
                         "--alerts", str(tmp_path / "alerts.jsonl"))
    assert f"future_timestamp={PATIENTS}" in out.stderr
    offline = [orjson.loads(line) for line in (tmp_path / "alerts.jsonl").read_bytes().splitlines()]
    assert len(offline) >= 2 * PATIENTS, "a deteriorating cohort should raise and escalate alerts"
    assert {e["condition"] for e in offline} == {"clinical"}  # no gap in the log for the no-data rule

    produce(services.bootstrap, deployment.topic_vitals,
            [(orjson.loads(line)["patient_id"].encode(), line) for line in lines])
    worker = deployment.start_worker()
    try:
        worker.wait_for("twinmon_events_consumed_total", len(lines), timeout=180)
        records = consume_all(services.bootstrap, deployment.env["TWINMON_TOPIC_ALERTS"], len(offline), 60)
        live = {e["event_id"]: e for e in (orjson.loads(r.value) for r in records)}
        assert set(live) == {e["event_id"] for e in offline}
        assert all(live[e["event_id"]] == e for e in offline)  # the same wire form, field for field
        dlq = consume_all(services.bootstrap, deployment.env["TWINMON_TOPIC_DLQ"], PATIENTS, 20)
        assert sorted(dict(r.headers)["twinmon-reason"] for r in dlq) == [b"future_timestamp"] * PATIENTS
        # Stamped 20 h after an hour in, produced now: about 19 h ahead of the record's time.
        assert all(dict(r.headers)["twinmon-detail"].startswith(b"measured_at 19.") for r in dlq)
    finally:
        worker.stop()
