"""FHIR ingest end to end: ``twinmon fhir ingest`` puts a Bundle of vital-sign Observations on the real broker,
a worker applies them, and the twin's FHIR view gives the same vitals back."""

from __future__ import annotations

import time

import orjson
import pytest

from feed.fhir import vital_observations
from tests.conftest import Deployment, Services
from tests.support.helpers import load_twins

pytestmark = pytest.mark.integration
UCUM = "http://unitsofmeasure.org"


def _obs(code: str, at: str, **value: object) -> dict[str, object]:
    return {"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": "Patient/fhir-p1"}, "device": {"reference": "Device/monitor-3"},
            "effectiveDateTime": at, **value}


def test_a_fhir_bundle_becomes_a_twin(services: Services, deployment: Deployment) -> None:
    t0 = int(time.time()) - 600
    entries = []
    for i in range(5):
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 + 60 * i))
        entries.append(_obs("8867-4", at, valueQuantity={"value": 70 + i, "system": UCUM, "code": "/min"}))
        entries.append(_obs("8310-5", at, valueQuantity={"value": 98.6, "system": UCUM, "code": "[degF]"}))
        entries.append(_obs("85354-9", at, component=[
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
             "valueQuantity": {"value": 120, "system": UCUM, "code": "mm[Hg]"}},
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
             "valueQuantity": {"value": 80, "system": UCUM, "code": "mm[Hg]"}}]))
    bundle = deployment.tmp / "bundle.json"
    bundle.write_bytes(orjson.dumps({"resourceType": "Bundle", "type": "collection",
                                     "entry": [{"resource": e} for e in entries]}))
    out = deployment.run("fhir", "ingest", str(bundle))
    assert "sent 20 readings" in out.stdout

    worker = deployment.start_worker()
    try:
        worker.wait_for("twinmon_events_consumed_total", 20)  # counted after the batch is in Redis
        (twin,) = load_twins(services.redis_url, deployment.env["TWINMON_REDIS_PREFIX"], ["fhir-p1"]).values()
    finally:
        worker.stop()
    assert twin.counts.applied == 20 and twin.counts.duplicate == 0
    assert set(twin.devices) == {"monitor-3"}
    view = {o["code"]["coding"][0]["code"]: o for o in vital_observations("fhir-p1", twin, (t0 + 240) * 1000)}
    assert set(view) == {"8867-4", "8310-5", "85354-9"}
    assert view["8310-5"]["valueQuantity"]["value"] == pytest.approx(37.0, abs=0.05)
    assert 68 < view["8867-4"]["valueQuantity"]["value"] < 76
    assert [c["valueQuantity"]["value"] for c in view["85354-9"]["component"]] == pytest.approx([120, 80], abs=1)
