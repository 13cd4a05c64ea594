"""The care-team feed over real HTTP: a running `twinmon serve` and worker with the real Kafka and Redis. Every
response is validated against the OpenAPI document the server serves; every endpoint refuses a missing token
(401) and answers another team's patient or alert as if it did not exist (404)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson
import pytest

from simulation.simulator import simulate
from streams.schema import encode
from tests.conftest import Deployment, Services, WorkerProcess
from tests.support.feed_helpers import ApiProcess, wait_until
from tests.support.helpers import consume_all, produce

pytestmark = pytest.mark.integration

TEAM, OTHER = "ward-7", "ward-9"
PATIENTS = [f"sim-{i:06d}" for i in range(3)]


def _alerts(api: ApiProcess, token: str) -> list[dict[str, Any]]:
    return list(api.call("GET", "/api/alerts", token, expect=200).json())


def test_feed_api(services: Services, deployment: Deployment) -> None:
    nurse = deployment.token("nurse-17", TEAM)
    other = deployment.token("nurse-99", OTHER)
    worker = deployment.start_worker()
    api = deployment.start_api(TWINMON_API_HEARTBEAT_S="1")
    try:
        _run(services, deployment, api, worker, nurse, other)
    finally:
        api.stop()
        worker.stop()
    log = api.log.read_text()
    assert nurse not in log and other not in log, "a token reached the server log"
    assert "sim-000" not in log, "a patient id reached the server log"


def _run(services: Services, deployment: Deployment, api: ApiProcess, worker: WorkerProcess, nurse: str,
         other: str) -> None:
    call = api.call
    # --- health ---
    call("GET", "/healthz", None, expect=200)
    assert call("GET", "/readyz", None, expect=200).json()["checks"] == {"redis": True, "kafka": True,
                                                                         "live_alerts": True}

    # --- every documented endpoint: no token -> 401, a wrong token -> 401 ---
    some = {"patient_id": PATIENTS[0], "alert_id": "0" * 24}
    for template, ops in api.spec["paths"].items():
        for method in ops:
            if template.startswith("/api") or template.startswith("/fhir"):
                for token in (None, "not-a-token"):
                    r = call(method.upper(), template, token, path=some, expect=401)
                    doc = r.json()
                    assert doc["issue"][0]["code"] == "login" if template.startswith("/fhir") else doc["error"]

    assert call("GET", "/api/me", other, expect=200).json() == {"user": "nurse-99", "team": OTHER}

    # --- enrolment (through Kafka to the worker) ---
    for pid in PATIENTS:
        r = call("POST", "/api/patients", nurse, json={"patient_id": pid, "age_band": "65-79",
                                                        "conditions": ["copd"]}, expect=202)
        assert r.json()["audit_id"]
    call("POST", "/api/patients", other, json={"patient_id": "theirs-1"}, expect=202)
    wait_until("the enrolments reach the team lists", lambda: {p["patient_id"] for p in call(
        "GET", "/api/patients", nurse, expect=200).json()} == set(PATIENTS), timeout=60)
    # Enrolling another team's patient is refused without saying whose it is.
    wait_until("their enrolment applied", lambda: call("GET", "/api/patients", other, expect=200).json())
    r = call("POST", "/api/patients", nurse, json={"patient_id": "theirs-1"}, expect=409)
    assert "ward-9" not in r.text
    # Bad bodies: clear 422s, never 500.
    r = call("POST", "/api/patients", nurse, content=b"{oops", headers={"Content-Type": "application/json"},
             expect=422)
    assert r.json()["error"] == "invalid request"
    r = call("POST", "/api/patients", nurse, json={"patient_id": "p-1", "age_band": 7}, expect=422)
    assert any("age_band" in d for d in r.json()["detail"])
    r = call("POST", "/api/patients", nurse, json={"patient_id": "p-1", "targets": {"spo2": [95, 80]}}, expect=422)
    assert any("spo2" in d for d in r.json()["detail"])
    call("POST", "/api/patients", nurse, json={"patient_id": "../../etc/passwd"}, expect=422)
    r = call("POST", "/api/patients", nurse, json={"patient_id": "p-2", "care_team": OTHER}, expect=422)
    assert any("care_team" in d for d in r.json()["detail"]), "the team comes from the token, never the body"
    call("POST", "/api/patients", nurse, json={"patient_id": "p-1", "conditions": ["x" * 100] * 1000},
         expect=413)
    r = httpx.get(f"{api.url}/api/patients/..%2F..%2Fetc%2Fpasswd", headers={"Authorization": f"Bearer {nurse}"})
    assert r.status_code == 404 and r.json()["error"]
    call("GET", "/api/patients/{patient_id}", nurse, path={"patient_id": "bad id!"}, expect=404)

    # --- vitals: three deteriorating patients, stamped over the last three hours ---
    start = int(time.time() * 1000) - 3 * 3_600_000
    readings = [(r.patient_id.encode(), encode(r)) for _, r in simulate(
        3, 3 * 3600.0, rate=0.25, seed=31, start_ms=start, deteriorating_share=1.0)]
    produce(services.bootstrap, deployment.topic_vitals, readings)
    worker.wait_for("twinmon_events_consumed_total", len(readings) + len(PATIENTS), timeout=120)
    open_alerts = wait_until("an open alert", lambda: _alerts(api, nurse), timeout=120)
    levels = [{"low": 1, "medium": 2, "high": 3}[a["level"]] for a in open_alerts]
    assert levels == sorted(levels, reverse=True), "alerts are highest level first"
    assert _alerts(api, other) == []

    # --- patients: list sorted by risk, one patient's twin ---
    listing = call("GET", "/api/patients", nurse, expect=200).json()
    risks = [(p["p_news2_7_60min"] or 0, p["p_news2_5_60min"] or 0) for p in listing]
    assert risks == sorted(risks, reverse=True)
    assert all(p["news2"] is not None and p["data_quality"] is not None for p in listing)
    target = open_alerts[0]
    pid = target["patient_id"]
    detail = call("GET", "/api/patients/{patient_id}", nurse, path={"patient_id": pid}, expect=200).json()
    assert {v["metric"] for v in detail["vitals"]} >= {"heart_rate", "spo2", "resp_rate"}
    hr = next(v for v in detail["vitals"] if v["metric"] == "heart_rate")
    assert hr["low95"] <= hr["estimate"] <= hr["high95"] and len(hr["forecast"]) >= 5
    assert hr["forecast"][-1]["high95"] - hr["forecast"][-1]["low95"] > hr["forecast"][0]["high95"] - hr[
        "forecast"][0]["low95"], "the forecast cone widens"
    assert detail["history"] and detail["summary"]["news2"]["subscores"]
    assert any(a["alert_id"] == target["alert_id"] for a in detail["alerts"])
    for token, who in ((other, "another team"), (nurse, "nobody")):
        p = pid if who == "another team" else "nobody-1"
        r = call("GET", "/api/patients/{patient_id}", token, path={"patient_id": p}, expect=404)
        assert r.json() == {"error": "no such patient in your care team", "detail": []}
    call("GET", "/api/patients/{patient_id}", nurse, path={"patient_id": "theirs-1"}, expect=404)
    call("PUT", "/api/patients/{patient_id}", other, path={"patient_id": pid}, json={}, expect=404)
    call("DELETE", "/api/patients/{patient_id}", other, path={"patient_id": pid}, expect=404)
    call("GET", "/api/patients/{patient_id}/alerts", other, path={"patient_id": pid}, expect=404)

    # --- acknowledge and resolve (through Kafka to the worker, audited first) ---
    aid = {"alert_id": target["alert_id"]}
    call("POST", "/api/alerts/{alert_id}/acknowledge", other, path=aid, expect=404)
    call("POST", "/api/alerts/{alert_id}/resolve", other, path=aid, json={"reason": "not mine"}, expect=404)
    call("POST", "/api/alerts/{alert_id}/acknowledge", nurse, path={"alert_id": "f" * 24}, expect=404)
    call("POST", "/api/alerts/{alert_id}/acknowledge", nurse, path=aid, expect=202)
    wait_until("the acknowledgement in the stored alert", lambda: any(
        a["alert_id"] == target["alert_id"] and a["acknowledged_by"] == "nurse-17" for a in _alerts(api, nurse)))
    call("POST", "/api/alerts/{alert_id}/resolve", nurse, path=aid, json={"reason": "  "}, expect=422)
    call("POST", "/api/alerts/{alert_id}/resolve", nurse, path=aid, json={}, expect=422)
    call("POST", "/api/alerts/{alert_id}/resolve", nurse, path=aid, json={"reason": "reviewed; fluids"}, expect=202)
    wait_until("the alert resolved", lambda: all(a["alert_id"] != target["alert_id"] for a in _alerts(api, nurse)))
    events = [orjson.loads(r.value) for r in consume_all(services.bootstrap, deployment.env["TWINMON_TOPIC_ALERTS"],
                                                        10_000, 10)]
    mine = [(e["kind"], e["user"]) for e in events if e["alert_id"] == target["alert_id"]]
    assert ("acknowledged", "nurse-17") in mine and ("resolved", "nurse-17") in mine

    # --- one patient's alert history (indexed from the alerts topic, newest first) ---
    def history() -> list[dict[str, Any]]:
        return list(call("GET", "/api/patients/{patient_id}/alerts", nurse, path={"patient_id": pid},
                         expect=200).json()["items"])

    kinds = wait_until("the history to hold the resolution", lambda: [
        e["kind"] for e in history() if e["alert_id"] == target["alert_id"]] if any(
        e["kind"] == "resolved" and e["alert_id"] == target["alert_id"] for e in history()) else None)
    assert kinds[0] == "resolved" and kinds[-1] == "raised" and "acknowledged" in kinds
    ats = [e["at"] for e in history()]
    assert ats == sorted(ats, reverse=True)

    # --- profile update and discharge ---
    call("PUT", "/api/patients/{patient_id}", nurse, path={"patient_id": PATIENTS[2]},
         json={"conditions": ["hypercapnic_respiratory_failure"], "targets": {"spo2": [88, 92]}}, expect=202)
    wait_until("the new profile", lambda: call("GET", "/api/patients/{patient_id}", nurse, path={
        "patient_id": PATIENTS[2]}, expect=200).json()["targets"] == {"spo2": [88, 92]})
    call("DELETE", "/api/patients/{patient_id}", nurse, path={"patient_id": PATIENTS[1]}, expect=202)
    wait_until("the discharge", lambda: call("GET", "/api/patients/{patient_id}", nurse, path={
        "patient_id": PATIENTS[1]}).status_code == 404)

    # --- audit trail: Kafka first, then indexed per team and queryable, newest first ---
    def audit(token: str, **params: Any) -> dict[str, Any]:
        return dict(call("GET", "/api/audit", token, params=params, expect=200).json())

    wanted = {"enrol": 3, "acknowledge": 1, "resolve": 1, "update": 1, "discharge": 1}

    def counted() -> bool:
        actions = [r["action"] for r in audit(nurse, limit=500)["items"]]
        return all(actions.count(k) == n for k, n in wanted.items())

    wait_until("the audit index", counted)
    items = audit(nurse, limit=500)["items"]
    assert all(r["team"] == TEAM and r["user"] == "nurse-17" for r in items)
    assert [r["at"] for r in items] == sorted((r["at"] for r in items), reverse=True)
    resolved = next(r for r in items if r["action"] == "resolve")
    assert resolved["alert_id"] == target["alert_id"] and resolved["reason"] == "reviewed; fluids"
    first = audit(nurse, limit=2)
    assert len(first["items"]) == 2 and first["next_offset"] == 2
    assert audit(nurse, limit=2, offset=2)["items"][0] == items[2]
    assert audit(nurse, since=items[0]["at"] + 1)["items"] == []
    assert [r["patient_id"] for r in audit(other)["items"]] == ["theirs-1"]
    raw = consume_all(services.bootstrap, deployment.env["TWINMON_TOPIC_AUDIT"], len(items) + 1, 20)
    assert {orjson.loads(r.value)["id"] for r in raw} >= {r["id"] for r in items}
    assert {r.key for r in raw} == {TEAM.encode(), OTHER.encode()}

    # --- the live stream: authenticated, sends the team's twin summaries, never another team's ---
    with httpx.stream("GET", f"{api.url}/api/stream", headers={"Authorization": f"Bearer {nurse}"},
                      timeout=30) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        shown: set[str] = set()
        heartbeat = False
        expect_data = False
        for line in resp.iter_lines():
            heartbeat = heartbeat or line == ": heartbeat"
            if line == "event: patients":
                expect_data = True
            elif expect_data and line.startswith("data: "):
                shown |= {p["patient_id"] for p in orjson.loads(line[6:])}
                expect_data = False
            if heartbeat and shown:
                break
        # Our patients still enrolled (one was discharged), never the other team's.
        assert shown == {PATIENTS[0], PATIENTS[2]}

    # A token revoked while its stream is open: the stream ends at the next heartbeat, and the token is refused.
    late = deployment.token("nurse-18", TEAM)
    with httpx.stream("GET", f"{api.url}/api/stream", headers={"Authorization": f"Bearer {late}"},
                      timeout=30) as resp:
        assert resp.status_code == 200
        lines = resp.iter_lines()
        while next(lines) != ": heartbeat":
            pass
        deployment.run("token", "revoke", "--user", "nurse-18")
        started = time.monotonic()
        for _ in lines:
            assert time.monotonic() - started < 10, "the stream outlived its revoked token"
    call("GET", "/api/alerts", late, expect=401)
