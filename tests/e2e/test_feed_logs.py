"""No patient data in the feed's log at any level: a running ``twinmon serve`` on the real Kafka and Redis, at each
of DEBUG..CRITICAL, takes FHIR readings (sent on through aiokafka, with their audit records) and answers a request
that fails with an exception whose message quotes the patient id; then its whole log (twinmon's, uvicorn's and the
Kafka client's loggers: everything the process wrote) is searched for the patient id and the reading's value.

The search is checked to be able to fail: the id and the value do reach the audit and vitals topics, the
exception does happen (a 500 with a request id), and the log does hold the lines of the chosen level."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import msgpack
import pytest
from redis.asyncio import Redis

from tests.conftest import Deployment, Services
from tests.support.helpers import consume_all
from twin_state.profile import Profile
from twin_state.redis_store import RedisProfileStore, RedisTwinStore

pytestmark = pytest.mark.integration

TEAM = "ward-logs"
PATIENT = "pii-canary-4471"  # its readings go through Kafka
BROKEN = "pii-canary-5582"  # its stored twin does not decode, and the decoder's message names it
VALUE = "173.25"  # a heart rate seen nowhere else


def _observation(at_ms: int) -> dict[str, Any]:
    stamp = datetime.fromtimestamp(at_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return {"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": f"Patient/{PATIENT}"}, "effectiveDateTime": stamp,
            "valueQuantity": {"value": float(VALUE), "unit": "/min", "system": "http://unitsofmeasure.org",
                              "code": "/min"}}


def _prepare(redis_url: str, prefix: str) -> None:
    async def go() -> None:
        client = Redis.from_url(redis_url)
        try:
            profiles = RedisProfileStore(client, prefix)
            now = int(time.time() * 1000)
            for pid in (PATIENT, BROKEN):
                assert await profiles.save(Profile(pid, TEAM, now))
            # A damaged twin whose decoding error quotes the unknown metric code: here, the patient and a value.
            blob = msgpack.packb([3, BROKEN, 0, 0, now, [[f"{BROKEN}/{VALUE}"]], [], [], [], [0, 0, 0, 0]])
            await client.hset(RedisTwinStore(client, prefix).key(BROKEN), "s", blob)
        finally:
            await client.aclose()

    asyncio.run(go())


@pytest.mark.parametrize("level", ["debug", "info", "warning", "error", "critical"])
def test_no_patient_data_in_the_feed_log_at_any_level(services: Services, deployment: Deployment,
                                                      level: str) -> None:
    env = deployment.env
    _prepare(services.redis_url, env["TWINMON_REDIS_PREFIX"])
    nurse = deployment.token("nurse-logs", TEAM)
    api = deployment.start_api(TWINMON_LOG_LEVEL=level)
    headers = {"Authorization": f"Bearer {nurse}"}
    try:
        r = httpx.post(f"{api.url}/fhir/Observation", json=_observation(int(time.time() * 1000) - 1000),
                       headers=headers, timeout=30)
        assert r.status_code == 202, r.text
        crashed = httpx.get(f"{api.url}/api/patients/{BROKEN}", headers=headers, timeout=30)
        assert crashed.status_code == 500, crashed.text
        assert httpx.get(f"{api.url}/healthz", timeout=5).status_code == 200  # the server lives on
    finally:
        api.stop()
    # The data did go through the Kafka client, so a payload logger had it to print.
    audit = consume_all(services.bootstrap, env["TWINMON_TOPIC_AUDIT"], 1)
    assert any(PATIENT.encode() in m.value for m in audit)
    vitals = consume_all(services.bootstrap, env["TWINMON_TOPIC_VITALS"], 1)
    assert any(VALUE.encode() in m.value and PATIENT.encode() in m.value for m in vitals)

    log = api.log.read_text()
    for canary in (PATIENT, BROKEN, VALUE):
        assert canary not in log, f"{canary} in the log at {level}:\n{log[max(log.find(canary) - 2000, 0):][:4000]}"
    assert "Traceback" not in log
    request_id = crashed.headers["x-request-id"]
    assert request_id in crashed.json()["error"] and BROKEN not in crashed.text and VALUE not in crashed.text
    assert crashed.headers["x-content-type-options"] == "nosniff"  # the security headers reach a 500 too
    # The log is there, at the level asked for.
    failed = f"request {request_id} failed: CorruptTwin at twin_state.codec:"
    if level in ("debug", "info"):
        assert "POST /fhir/Observation 202" in log
    if level != "critical":
        assert failed in log, log[-3000:]
    else:
        assert failed not in log
    if level == "debug":
        assert " DEBUG " in log
