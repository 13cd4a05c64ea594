"""Enrolment through Kafka into Redis, and the twin views a person uses, against a running worker."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from redis.asyncio import Redis

from simulation.simulator import simulate
from streams.schema import encode
from tests.conftest import Deployment, Services
from tests.support.helpers import consume_all, produce
from twin_state.catalogue import Metric
from twin_state.profile import Status
from twin_state.redis_store import RedisProfileStore

pytestmark = pytest.mark.integration


def profile_and_team(services: Services, prefix: str, pid: str, team: str) -> tuple[object, list[str]]:
    async def go() -> tuple[object, list[str]]:
        client = Redis.from_url(services.redis_url)
        try:
            store = RedisProfileStore(client, prefix)
            return await store.get(pid), await store.team(team)
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_enrol_update_discharge_and_bad_enrolment(services: Services, deployment: Deployment) -> None:
    prefix = deployment.env["TWINMON_REDIS_PREFIX"]
    worker = deployment.start_worker()
    try:
        deployment.run("enrol", "p-77", "--team", "ward-7", "--age-band", "65-79",
                       "--condition", "hypercapnic_respiratory_failure", "--target", "spo2=88:92")
        produce(services.bootstrap, deployment.env["TWINMON_TOPIC_ENROLMENTS"],
                [(b"p-78", orjson.dumps({"patient_id": "p-78", "care_team": "ward-7", "updated_at": -5}))])
        worker.wait_for("twinmon_events_consumed_total", 2)
        profile, team = profile_and_team(services, prefix, "p-77", "ward-7")
        assert profile is not None and profile.spo2_scale2 and profile.targets == {Metric.SPO2: (88.0, 92.0)}
        assert team == ["p-77"]

        dlq = consume_all(services.bootstrap, deployment.env["TWINMON_TOPIC_DLQ"], 1)
        assert [dict(r.headers)["twinmon-reason"] for r in dlq] == [b"bad_enrolment"]

        deployment.run("enrol", "p-77", "--team", "ward-9")  # moved to another team
        deployment.run("discharge", "p-77", "--team", "ward-9")
        worker.wait_for("twinmon_events_consumed_total", 4)
        profile, team7 = profile_and_team(services, prefix, "p-77", "ward-7")
        _, team9 = profile_and_team(services, prefix, "p-77", "ward-9")
        assert profile is not None and profile.status is Status.DISCHARGED
        assert team7 == [] and team9 == []
    finally:
        worker.stop()


def test_twin_show_forecast_and_history_read_the_live_twin(services: Services, deployment: Deployment) -> None:
    start = int(time.time() * 1000) - 1_800_000
    readings = [r for _, r in simulate(3, 1800, 1.0, 21, start, 0.0)]
    produce(services.bootstrap, deployment.topic_vitals, [(r.patient_id.encode(), encode(r)) for r in readings])
    worker = deployment.start_worker()
    try:
        worker.wait_for("twinmon_events_consumed_total", len(readings))
        show = deployment.run("twin", "sim-000001").stdout
        assert "heart_rate" in show and "95% band" in show and "valid 1h" in show
        # Nobody recorded consciousness or oxygen: the NEWS2 line says what it assumed.
        assert "NEWS2 " in show and "assumed: consciousness alert, air" in show
        forecast = deployment.run("twin", "forecast", "sim-000001", "--horizon", "30m",
                                  "--scenario", "trend-stops").stdout
        assert "forecast in 30 min, trend-stops" in forecast and "spo2" in forecast
        history = deployment.run("twin", "history", "sim-000001", "--last", "500").stdout.splitlines()
        # One point per vital per minute: 30 minutes of 6 vitals is about 180 points.
        assert 120 <= len(history) <= 200, len(history)
        missing = deployment.run("twin", "nobody", check=False)
        assert missing.returncode == 1 and "no twin for patient 'nobody'" in missing.stderr
    finally:
        worker.stop()
