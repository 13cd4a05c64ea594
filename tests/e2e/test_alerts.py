"""Alerts end to end: deteriorating patients raise alerts on the `alerts` topic, scoped to their care team,
and a worker killed mid-stream neither loses an alert event nor publishes a different one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import orjson
import pytest

from alerts.policy import AlertEvent
from simulation.simulator import simulate
from streams.processor import BatchProcessor, RawMessage
from streams.schema import encode
from tests.conftest import Deployment, Services
from tests.support.helpers import consume_all, produce
from twin_state.store import InMemoryTwinStore

pytestmark = pytest.mark.integration

HOURS = 3


def cohort() -> list[tuple[bytes, bytes]]:
    start = int(time.time() * 1000) - HOURS * 3_600_000
    readings = simulate(20, HOURS * 3600.0, rate=0.25, seed=31, start_ms=start, deteriorating_share=0.5)
    return [(r.patient_id.encode(), encode(r)) for _, r in readings]


def offline_event_ids(messages: list[tuple[bytes, bytes]]) -> set[str]:
    events: list[AlertEvent] = []

    async def publish(batch: Sequence[AlertEvent]) -> None:
        events.extend(batch)

    async def go() -> None:
        proc = BatchProcessor(InMemoryTwinStore(), publish=publish)
        raw = [RawMessage(0, i, k, v) for i, (k, v) in enumerate(messages)]
        await proc.process(raw, int(time.time() * 1000))

    asyncio.run(go())
    return {e.event_id for e in events}


def test_alerts_survive_a_killed_worker_exactly_once_by_id(services: Services, deployment: Deployment) -> None:
    messages = cohort()
    for i in range(20):
        deployment.run("enrol", f"sim-{i:06d}", "--team", "ward-7" if i % 2 else "ward-9")
    produce(services.bootstrap, deployment.topic_vitals, messages)

    first = deployment.start_worker("first", TWINMON_BATCH_MAX="200")
    first.wait_for("twinmon_events_consumed_total", len(messages) // 2)
    first.kill()
    second = deployment.start_worker("second")
    try:
        second.wait_for("twinmon_readings_total", 1)  # joined and consuming
        expected = offline_event_ids(messages)
        assert expected, "the simulated cohort should raise alerts"
        records = consume_all(services.bootstrap, deployment.env["TWINMON_TOPIC_ALERTS"], len(expected), 60)
        events = [orjson.loads(r.value) for r in records]
        by_id = {e["event_id"]: e for e in events}
        # Redelivery may publish an event twice; after de-duplication by id, exactly the offline set.
        assert set(by_id) == expected
        for e in by_id.values():
            number = int(e["patient_id"].split("-")[1])
            assert e["care_team"] == ("ward-7" if number % 2 else "ward-9")
            assert e["kind"] in {"raised", "escalated", "resolved"} and e["level"] in {"low", "medium", "high"}
        assert any(e["kind"] == "raised" and e["condition"] == "clinical" for e in by_id.values())
    finally:
        second.stop()


def test_acknowledge_and_resolve_through_kafka_are_audited_and_change_the_alert(
    services: Services, deployment: Deployment
) -> None:
    start = int(time.time() * 1000) - 3 * 3_600_000
    readings = simulate(4, 3 * 3600.0, rate=0.25, seed=31, start_ms=start, deteriorating_share=1.0)
    produce(services.bootstrap, deployment.topic_vitals,
            [(r.patient_id.encode(), encode(r)) for _, r in readings])
    worker = deployment.start_worker()
    try:
        worker.wait_for("twinmon_alerts_total", 1, timeout=120)
        worker.wait_for("twinmon_events_consumed_total", sum(1 for _ in simulate(4, 3 * 3600.0, rate=0.25,
                                                                                 seed=31, start_ms=start,
                                                                                 deteriorating_share=1.0)))
        pid, alert_id = None, None
        for i in range(4):
            listing = deployment.run("alert", "list", f"sim-{i:06d}").stdout
            if "NOT acknowledged" in listing:
                pid, alert_id = f"sim-{i:06d}", listing.split()[0]
                break
        assert pid is not None and alert_id is not None, "no open, unacknowledged alert to act on"

        deployment.run("alert", "ack", pid, alert_id, "--user", "nurse-17")
        deadline = time.monotonic() + 30
        while "acknowledged by nurse-17" not in deployment.run("alert", "list", pid).stdout:
            assert time.monotonic() < deadline, "acknowledgement never reached the stored alert"
            time.sleep(0.3)
        deployment.run("alert", "resolve", pid, alert_id, "--user", "dr-4", "--reason", "reviewed; fluids started")
        deployment.run("alert", "ack", pid, alert_id, "--user", "nurse-18")  # too late: already resolved
        produce(services.bootstrap, deployment.env["TWINMON_TOPIC_ALERT_ACTIONS"], [(pid.encode(), b"{oops")])

        events = [orjson.loads(r.value) for r in consume_all(services.bootstrap,
                                                            deployment.env["TWINMON_TOPIC_ALERTS"], 10_000, 20)]
        mine = [e for e in events if e["alert_id"] == alert_id]
        acks = [e for e in mine if e["kind"] == "acknowledged"]
        resolutions = [e for e in mine if e["kind"] == "resolved"]
        assert [(e["user"], e["reason"]) for e in acks] == [("nurse-17", "acknowledged")]
        assert [(e["user"], e["reason"]) for e in resolutions] == [("dr-4", "reviewed; fluids started")]
        assert alert_id not in deployment.run("alert", "list", pid).stdout
        worker.wait_for("twinmon_alert_actions_stale_total", 1, timeout=30)
        dlq = consume_all(services.bootstrap, deployment.env["TWINMON_TOPIC_DLQ"], 1, 20)
        assert [dict(r.headers)["twinmon-reason"] for r in dlq] == [b"bad_action"]
        audit = consume_all(services.bootstrap, deployment.env["TWINMON_TOPIC_ALERT_ACTIONS"], 4, 20)
        assert len(audit) == 4  # every action, valid or not, stays in the audit topic
    finally:
        worker.stop()
