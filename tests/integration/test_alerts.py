"""Alerts end to end: deteriorating patients raise alerts on the `alerts` topic, scoped to their care team,
and a worker killed mid-stream neither loses an alert event nor publishes a different one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import orjson
import pytest

from alerts.policy import AlertEvent
from streams.processor import BatchProcessor, RawMessage
from streams.schema import encode
from streams.simulator import simulate
from tests.conftest import Deployment, Services
from tests.integration.helpers import consume_all, produce
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
