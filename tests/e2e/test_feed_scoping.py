"""Team scoping over real HTTP (a running `twinmon serve`, the real Kafka and Redis): access follows the stored
profile, never a team set left behind; live alerts reach only the patient's current team; a new enrolment of an
id shows nothing of its earlier episode."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import orjson
import pytest
from redis.asyncio import Redis

from simulation.simulator import simulate
from streams.schema import encode
from tests.conftest import Deployment, Services
from tests.support.feed_helpers import ApiProcess, wait_until
from tests.support.helpers import produce
from twin_state.profile import Profile, Status
from twin_state.redis_store import RedisProfileStore

pytestmark = pytest.mark.integration

TEAM, OTHER = "ward-7", "ward-9"


def save_profiles(services: Services, deployment: Deployment, *profiles: Profile,
                  stale: dict[str, list[str]] | None = None) -> None:
    """Profiles written as the workers write them; ``stale``: extra team-set entries a crash left behind."""

    async def go() -> None:
        client = Redis.from_url(services.redis_url)
        try:
            store = RedisProfileStore(client, deployment.env["TWINMON_REDIS_PREFIX"])
            for p in profiles:
                assert await store.save(p)
            for team, pids in (stale or {}).items():
                await client.sadd(store.team_key(team), *pids)
        finally:
            await client.aclose()

    asyncio.run(go())


def listed(api: ApiProcess, token: str) -> set[str]:
    return {p["patient_id"] for p in api.call("GET", "/api/patients", token, expect=200).json()}


def test_a_stale_team_set_grants_nothing(services: Services, deployment: Deployment) -> None:
    nurse = deployment.token("nurse-17", TEAM)
    now = int(time.time() * 1000)
    save_profiles(services, deployment, Profile("mine", TEAM, now), Profile("moved", OTHER, now),
                  Profile("left", TEAM, now, Status.DISCHARGED), stale={TEAM: ["moved", "left"]})
    api = deployment.start_api()
    try:
        call = api.call
        assert listed(api, nurse) == {"mine"}
        for pid in ("moved", "left"):
            p = {"patient_id": pid}
            call("GET", "/api/patients/{patient_id}", nurse, path=p, expect=404)
            call("GET", "/api/patients/{patient_id}/alerts", nurse, path=p, expect=404)
            call("PUT", "/api/patients/{patient_id}", nurse, path=p, json={}, expect=404)
            call("DELETE", "/api/patients/{patient_id}", nurse, path=p, expect=404)
            call("GET", "/fhir/Patient/{patient_id}/Observation", nurse, path=p, expect=404)
            assert call("GET", "/fhir/Flag", nurse, params={"patient": pid}, expect=200).json()["total"] == 0
        call("GET", "/api/patients/{patient_id}", nurse, path={"patient_id": "mine"}, expect=200)
        # Enrolling another team's patient: refused, saying nothing of whose it is; a discharged id is free.
        r = call("POST", "/api/patients", nurse, json={"patient_id": "moved"}, expect=409)
        assert OTHER not in r.text and "enrolled" not in r.text
        call("POST", "/api/patients", nurse, json={"patient_id": "left"}, expect=202)
    finally:
        api.stop()
    dry = deployment.run("profiles", "reconcile", "--dry-run").stdout
    assert "0 membership(s) would be added, 2 would be removed" in dry
    assert "2 were removed" in deployment.run("profiles", "reconcile").stdout
    assert "0 membership(s) were added, 0 were removed" in deployment.run("profiles", "reconcile").stdout


def _alert_event(pid: str, n: int) -> bytes:
    return orjson.dumps({"event_id": f"{n:024x}", "alert_id": f"{n:024x}", "patient_id": pid, "kind": "raised",
                         "condition": "clinical", "level": "high", "at": int(time.time() * 1000), "reason": "test",
                         "care_team": TEAM})


def test_live_alerts_reach_only_the_patients_current_team(services: Services, deployment: Deployment) -> None:
    nurse = deployment.token("nurse-17", TEAM)
    now = int(time.time() * 1000)
    save_profiles(services, deployment, Profile("mine", TEAM, now), Profile("moved", OTHER, now),
                  Profile("left", TEAM, now, Status.DISCHARGED))
    api = deployment.start_api(TWINMON_API_HEARTBEAT_S="1")
    received: list[dict[str, Any]] = []
    connected = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", f"{api.url}/api/stream", headers={"Authorization": f"Bearer {nurse}"},
                          timeout=60) as resp:
            event = ""
            for line in resp.iter_lines():
                connected.set()
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "alert":
                    received.append(orjson.loads(line[6:]))
                    if received[-1]["patient_id"] == "mine":
                        return

    try:
        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        assert connected.wait(30), "the stream did not open"
        # One key, one partition: the three arrive in this order, so "mine" last means the others were seen.
        produce(services.bootstrap, deployment.env["TWINMON_TOPIC_ALERTS"],
                [(b"k", _alert_event(pid, n)) for n, pid in enumerate(("moved", "left", "mine"), 1)])
        listener.join(60)
        assert not listener.is_alive(), "the current team's alert never arrived"
        assert [e["patient_id"] for e in received] == ["mine"]
    finally:
        api.stop()


def test_a_new_enrolment_shows_nothing_of_earlier_episodes(services: Services, deployment: Deployment) -> None:
    ours, theirs = deployment.token("nurse-17", TEAM), deployment.token("nurse-99", OTHER)
    worker = deployment.start_worker()
    api = deployment.start_api()
    pid = "sim-000000"
    p = {"patient_id": pid}
    try:
        call = api.call
        # The first episode, with the other team: deteriorating readings, an alert they acknowledge, a discharge.
        call("POST", "/api/patients", theirs, json={"patient_id": pid, "conditions": ["copd"]}, expect=202)
        wait_until("their enrolment", lambda: listed(api, theirs) == {pid})
        start = int(time.time() * 1000) - 3_600_000
        readings = [(r.patient_id.encode(), encode(r)) for _, r in simulate(
            1, 3600.0, rate=0.25, seed=31, start_ms=start, deteriorating_share=1.0)]
        produce(services.bootstrap, deployment.topic_vitals, readings)
        alert = wait_until("an open alert", lambda: call("GET", "/api/alerts", theirs, expect=200).json(),
                           timeout=120)[0]
        call("POST", "/api/alerts/{alert_id}/acknowledge", theirs, path={"alert_id": alert["alert_id"]}, expect=202)
        wait_until("the acknowledgement", lambda: any(a["acknowledged_by"] == "nurse-99" for a in call(
            "GET", "/api/alerts", theirs, expect=200).json()))
        wait_until("the alert history", lambda: call("GET", "/api/patients/{patient_id}/alerts", theirs, path=p,
                                                     expect=200).json()["items"])
        call("DELETE", "/api/patients/{patient_id}", theirs, path=p, expect=202)
        wait_until("the discharge", lambda: not listed(api, theirs))

        # A new episode, with this team: nothing of the first shows, anywhere.
        call("POST", "/api/patients", ours, json={"patient_id": pid}, expect=202)
        wait_until("our enrolment", lambda: listed(api, ours) == {pid})
        detail = call("GET", "/api/patients/{patient_id}", ours, path=p, expect=200)
        doc = detail.json()
        assert doc["vitals"] == [] and doc["history"] == [] and doc["summary"]["news2"] is None
        assert "nurse-99" not in detail.text
        assert all(a["acknowledged_by"] is None for a in doc["alerts"])
        assert call("GET", "/api/patients/{patient_id}/alerts", ours, path=p, expect=200).json()["items"] == []
        assert call("GET", "/fhir/Patient/{patient_id}/Observation", ours, path=p, expect=200).json()["total"] == 0
        assert "nurse-99" not in call("GET", "/fhir/Flag", ours, params={"patient": pid}, expect=200).text
        assert all(r["team"] == TEAM for r in call("GET", "/api/audit", ours, expect=200).json()["items"])

        # Readings of the new episode show as soon as they arrive.
        fresh = [(r.patient_id.encode(), encode(r)) for _, r in simulate(
            1, 60.0, rate=0.5, seed=32, start_ms=int(time.time() * 1000) + 1000, deteriorating_share=0.0)]
        produce(services.bootstrap, deployment.topic_vitals, fresh)
        wait_until("the new episode's vitals", lambda: call("GET", "/api/patients/{patient_id}", ours, path=p,
                                                            expect=200).json()["vitals"], timeout=60)
    finally:
        api.stop()
        worker.stop()
