"""The feed's FHIR R4 endpoints over real HTTP with a running worker: vital-sign Observations ingested into the
vitals topic, the twin read back as vital-signs Observations and the alert as a Flag, every Bundle validated
with fhirclient's R4 (4.0.1) models in strict mode; team-scoped like the rest of the API."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from fhirclient.models.bundle import Bundle
from fhirclient.models.operationoutcome import OperationOutcome

from tests.conftest import Deployment, Services
from tests.support.feed_helpers import ApiProcess, wait_until

pytestmark = pytest.mark.integration

PATIENT, THEIRS = "fh-0001", "fh-0002"
LOINC = {"8867-4": ("/min", 138.0), "9279-1": ("/min", 29.0), "59408-5": ("%", 86.0), "8310-5": ("Cel", 39.3),
         "8480-6": ("mm[Hg]", 88.0)}


def observation(pid: str, code: str, unit: str, value: float, at_ms: int) -> dict[str, Any]:
    stamp = datetime.fromtimestamp(at_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return {
        "resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": stamp,
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    }


def bundle_of(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": e} for e in entries]}


def outcome(r: Any) -> tuple[str, str]:
    """The single issue of an OperationOutcome answer, after validating it as R4."""
    doc = r.json()
    OperationOutcome(doc, strict=True)
    issue = doc["issue"][0]
    return issue["severity"], issue["diagnostics"]


def fhir_bundle(api: ApiProcess, template: str, token: str, **kw: Any) -> dict[str, Any]:
    r = api.call("GET", template, token, expect=200, **kw)
    assert r.headers["content-type"].startswith("application/fhir+json")
    doc: dict[str, Any] = r.json()
    Bundle(doc, strict=True)  # raises on anything that is not valid R4
    return doc


def assert_no_reading_after(detail: dict[str, Any], at_ms: int) -> None:
    stamps = {v["metric"]: v["last_raw_at"] for v in detail["vitals"]}
    assert stamps and all(t <= at_ms for t in stamps.values()), stamps


def test_fhir_ingest_views_and_scoping(services: Services, deployment: Deployment) -> None:
    nurse = deployment.token("nurse-f", "ward-7")
    other = deployment.token("nurse-g", "ward-9")
    worker = deployment.start_worker()
    api = deployment.start_api()
    try:
        api.call("POST", "/api/patients", nurse, json={"patient_id": PATIENT}, expect=202)
        api.call("POST", "/api/patients", other, json={"patient_id": THEIRS}, expect=202)
        for token in (nurse, other):
            wait_until("the enrolments", lambda t=token: api.call("GET", "/api/patients", t, expect=200).json())

        # Two minutes of a deteriorating patient, every 10 s, as one Bundle of vital-sign Observations.
        now = int(time.time() * 1000)
        obs = [observation(PATIENT, code, unit, value, now - 120_000 + i * 10_000)
               for i in range(13) for code, (unit, value) in LOINC.items()]
        r = api.call("POST", "/fhir/Observation", nurse, json=bundle_of(obs), expect=202)
        assert outcome(r) == ("information", f"{len(obs)} readings sent to the workers")
        # Who entered them is in the team's audit trail (and not in the other team's).
        entered = wait_until("the ingest audited", lambda: [
            e for e in api.call("GET", "/api/audit", nurse, expect=200).json()["items"] if e["action"] == "observe"])
        assert [(e["user"], e["patient_id"], e["reason"]) for e in entered] == [
            ("nurse-f", PATIENT, f"{len(obs)} readings (FHIR Observation)")]
        assert all(e["action"] != "observe" for e in api.call("GET", "/api/audit", other, expect=200).json()["items"])

        # Bad FHIR: 422 with the library's message for people; another team's patient: 404; nothing produced.
        bad = observation(PATIENT, "8867-4", "/min", 80.0, now)
        bad["valueQuantity"]["code"] = "furlongs"
        r = api.call("POST", "/fhir/Observation", nurse, json=bad, expect=422)
        assert outcome(r)[0] == "error" and "furlongs" in outcome(r)[1]
        r = api.call("POST", "/fhir/Observation", nurse, json={"resourceType": "Patient"}, expect=422)
        assert outcome(r)[0] == "error" and "Patient" in outcome(r)[1]
        r = api.call("POST", "/fhir/Observation", nurse, content=b"{oops",
                     headers={"Content-Type": "application/fhir+json"}, expect=422)
        assert outcome(r)[0] == "error"
        r = api.call("POST", "/fhir/Observation", nurse, json=observation(THEIRS, "8867-4", "/min", 80.0, now),
                     expect=404)
        assert outcome(r) == ("error", "no such patient in your care team")
        api.call("POST", "/fhir/Observation", nurse, json=observation("nobody-1", "8867-4", "/min", 80.0, now),
                 expect=404)
        # A reading stamped 20 h ahead (a time-zone slip) would silence the patient: the whole request is refused
        # with a 422 that says how far ahead it was, and nothing reaches the workers.
        slip = [observation(PATIENT, "8867-4", "/min", 80.0, now),
                observation(PATIENT, "8867-4", "/min", 81.0, now + 20 * 3600 * 1000)]
        r = api.call("POST", "/fhir/Observation", nurse, json=bundle_of(slip), expect=422)
        severity, said = outcome(r)
        assert severity == "error"
        assert "refused: effective time is 20.0 h ahead of the feed's clock; the allowance is 5.0 min" in said, said
        api.call("POST", "/fhir/Observation", nurse, expect=422,
                 json=observation(PATIENT, "8867-4", "/min", 80.0, now + 5 * 60_000 + 60_000))
        # Refused requests left no audit record.
        assert len([e for e in api.call("GET", "/api/audit", nurse, expect=200).json()["items"]
                    if e["action"] == "observe"]) == 1

        # The twin, read back as FHIR R4 vital-signs Observations.
        def codes() -> set[str]:
            doc = fhir_bundle(api, "/fhir/Patient/{patient_id}/Observation", nurse, path={"patient_id": PATIENT})
            assert doc["type"] == "searchset" and doc["total"] == len(doc.get("entry", []))
            return {c["code"] for e in doc.get("entry", []) for c in e["resource"]["code"]["coding"]}

        found = wait_until("the twin's Observations", lambda: codes() >= {"8867-4", "9279-1", "8310-5"} and codes())
        assert "85354-9" in found  # blood pressure as the panel
        for token, pid in ((other, PATIENT), (nurse, THEIRS), (nurse, "nobody-1")):
            api.call("GET", "/fhir/Patient/{patient_id}/Observation", token, path={"patient_id": pid}, expect=404)

        # The alert the deterioration raised, as a Flag; another team's search matches nothing.
        def flags(token: str, pid: str) -> list[dict[str, Any]]:
            doc = fhir_bundle(api, "/fhir/Flag", token, params={"patient": pid})
            return [e["resource"] for e in doc.get("entry", [])]

        flag = wait_until("a Flag for the alert", lambda: flags(nurse, PATIENT), timeout=60)[0]
        assert flag["resourceType"] == "Flag" and flag["status"] == "active"
        assert flag["subject"]["reference"] == f"Patient/{PATIENT}"
        assert flags(other, PATIENT) == [] and flags(nurse, THEIRS) == []
        # None of the refused readings reached the twin: its heart rate is still the Bundle's, at the Bundle's time.
        twin = api.call("GET", "/api/patients/{patient_id}", nurse, path={"patient_id": PATIENT}, expect=200).json()
        assert_no_reading_after(twin, now)
        assert outcome(api.call("GET", "/fhir/Flag", nurse, params={"patient": "../x"}, expect=422))[0] == "error"
    finally:
        api.stop()
        worker.stop()
