"""No patient identifiers, values or people's names in the worker's logs or on its metrics page.

The pipeline runs at log level debug (the most a person would turn on to investigate) with recognisable
"canary" strings everywhere a patient or a person can appear: patient and device ids, a distinctive heart rate,
an enrolment with a care team, bad messages that quote the patient, and an alert acknowledged and resolved by a
user with a recognisable name and reason. Then everything the worker wrote to stdout and stderr, and its whole
metrics page, are searched for the canaries.

The search is checked to be able to fail: the canaries do reach the places that are meant to hold them (the
twins in Redis, the alert events, the dead-letter topic), and the care team, which is not a patient identifier
and is a deliberate metric label, is found on the metrics page by the same search.
"""

from __future__ import annotations

import re
import time
import urllib.request
from dataclasses import replace

import orjson
import pytest

from simulation.simulator import simulate
from streams.schema import encode
from tests.conftest import Deployment, Services
from tests.support.helpers import consume_all, load_twins, produce

pytestmark = pytest.mark.integration

PATIENTS = {"sim-000000": "pii-canary-7731", "sim-000001": "pii-canary-7732"}
DEVICE = "dev-canary-5521"
HEART_RATE = 173.25
TEAM = "ward-canary-4419"
USER = "Nightingale.Canary-9904"
REASON = "canary reason: spoke to Mrs Canary-3388"
HOURS = 3


def canary_stream() -> list[tuple[bytes, bytes]]:
    start = int(time.time() * 1000) - HOURS * 3_600_000
    out = []
    last = start
    for _, r in simulate(2, HOURS * 3600.0, rate=0.25, seed=31, start_ms=start, deteriorating_share=1.0):
        pid = PATIENTS[r.patient_id]
        r = replace(r, patient_id=pid, device_id=f"{DEVICE}-{r.device_id[-4:]}")
        out.append((pid.encode(), encode(r)))
        last = max(last, r.measured_at)
    for i, pid in enumerate(PATIENTS.values()):
        reading = {"v": 1, "patient_id": pid, "device_id": DEVICE, "metric": "heart_rate", "value": HEART_RATE,
                   "unit": "/min", "measured_at": last + 1000, "seq": 10**9 + i}
        out.append((pid.encode(), orjson.dumps(reading)))
        # Bad messages that quote the patient: dead-lettered with a detail, never logged.
        out.append((pid.encode(), orjson.dumps({**reading, "value": str(HEART_RATE)})))
        out.append((b"other-key", orjson.dumps(reading)))
        out.append((pid.encode(), orjson.dumps({**reading, "metric": f"glucose-{pid}"})))
        out.append((pid.encode(), f'{{"patient_id": "{pid}", '.encode()))
    return out


def test_logs_and_metrics_hold_no_patient_identifiers_values_or_names(
    services: Services, deployment: Deployment
) -> None:
    for pid in PATIENTS.values():
        deployment.run("enrol", pid, "--team", TEAM)
    stream = canary_stream()
    produce(services.bootstrap, deployment.topic_vitals, stream)
    worker = deployment.start_worker(TWINMON_LOG_LEVEL="debug")
    try:
        worker.wait_for("twinmon_events_consumed_total", len(stream) + len(PATIENTS), timeout=180)
        worker.wait_for("twinmon_alerts_total", 1, timeout=120)
        pid, alert_id = None, None
        for candidate in PATIENTS.values():
            listing = deployment.run("alert", "list", candidate).stdout
            if "NOT acknowledged" in listing:
                pid, alert_id = candidate, listing.split()[0]
                break
        assert pid is not None and alert_id is not None, "the deteriorating canaries should have an open alert"
        deployment.run("alert", "ack", pid, alert_id, "--user", USER)
        deadline = time.monotonic() + 60
        while f"acknowledged by {USER}" not in deployment.run("alert", "list", pid).stdout:
            assert time.monotonic() < deadline, "acknowledgement never reached the stored alert"
            time.sleep(0.5)
        deployment.run("alert", "resolve", pid, alert_id, "--user", USER, "--reason", REASON)
        worker.wait_for("twinmon_alerts_total", 3, timeout=60)  # raised, acknowledged, resolved at least
        # The census labels its gauges by care team every few seconds: wait for it to have run.
        deadline = time.monotonic() + 60
        while worker.metric("twinmon_patients_monitored", {"care_team": TEAM}) != len(PATIENTS):
            assert time.monotonic() < deadline, "the census never counted the canaries' team"
            time.sleep(0.5)
        with urllib.request.urlopen(worker.metrics_url, timeout=5) as resp:  # noqa: S310 - our own http URL
            metrics_page = resp.read().decode()
    finally:
        worker.stop()
    assert worker.proc.returncode == 0, worker.log.read_text()[-3000:]
    log = worker.log.read_text(errors="replace")

    # The canaries did flow through the places meant to hold them...
    twins = load_twins(services.redis_url, deployment.env["TWINMON_REDIS_PREFIX"], list(PATIENTS.values()))
    assert sorted(twins) == sorted(PATIENTS.values())
    alerts = consume_all(services.bootstrap, deployment.env["TWINMON_TOPIC_ALERTS"], 10_000, 15)
    assert any(orjson.loads(r.value).get("user") == USER for r in alerts)
    dlq = consume_all(services.bootstrap, deployment.env["TWINMON_TOPIC_DLQ"], 4 * len(PATIENTS), 20)
    assert any(pid.encode() in (r.value or b"") for r in dlq for pid in PATIENTS.values())
    # ...and the search finds what is allowed to be there: the team label, and a worker that really logged.
    assert TEAM in metrics_page
    assert len(log.splitlines()) > 20, log
    assert re.search(r"\bDEBUG\b|\[D\]", log), "the worker did not log at debug level"

    canaries = [*PATIENTS.values(), "canary-77", DEVICE, str(HEART_RATE), "173.2", USER, "Nightingale", REASON,
                "Canary-3388", alert_id]
    leaks = {c: _context(text, c) for c in canaries for text in (log, metrics_page) if c.lower() in text.lower()}
    assert leaks == {}, leaks


def _context(text: str, needle: str) -> str:
    i = text.lower().find(needle.lower())
    return text[max(i - 150, 0): i + 150]
