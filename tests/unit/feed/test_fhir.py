"""FHIR views and ingest (feed/fhir.py), validated with two FHIR model libraries from PyPI.

* ``fhirclient`` 4.4.0 models, generated from FHIR 4.0.1 (R4) StructureDefinitions, in strict mode: wrong types,
  missing required elements and unknown elements raise ``FHIRValidationError``.
* ``fhir.resources`` 8.3.0, package ``fhir.resources.R4B`` (FHIR 4.3.0, pydantic 2 models; the package has no
  4.0.1 models): Observation and Flag are unchanged between R4 and R4B in every element used here.

Neither library checks profiles, so the vital-signs profile's own rules (category, LOINC code, UCUM quantity,
subject, effective time) are asserted here directly.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fhir.resources.R4B import __fhir_version__ as r4b_version
from fhir.resources.R4B.bundle import Bundle as BundleR4B
from fhir.resources.R4B.flag import Flag as FlagR4B
from fhir.resources.R4B.observation import Observation as ObservationR4B
from fhirclient.models.bundle import Bundle as BundleR4
from fhirclient.models.flag import Flag as FlagR4
from fhirclient.models.observation import Observation as ObservationR4
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.policy import Condition, Level, OpenAlert
from feed.fhir import (
    ACK_EXTENSION,
    FHIR_DEVICE,
    UCUM,
    UNCERTAINTY_EXTENSION,
    FhirError,
    alert_flag,
    fhir_instant,
    observations_to_wire,
    parse_datetime_ms,
    vital_observations,
)
from streams.schema import MAX_AHEAD_MS, Rejected, decode
from twin_state.catalogue import Metric
from twin_state.twin import Outcome, Position, Reading, Twin, new_twin, step
from twin_state.view import vital_views

T0 = 1_763_942_400_000  # 2025-11-24T00:00:00Z
PID = "p-0042"
VALUES = {
    Metric.HEART_RATE: 82.0, Metric.RESP_RATE: 17.0, Metric.SPO2: 96.0, Metric.TEMPERATURE: 37.2,
    Metric.BP_SYSTOLIC: 121.0, Metric.BP_DIASTOLIC: 78.0, Metric.ACTIVITY: 0.0,
}
VITAL_LOINC = {"8867-4", "9279-1", "59408-5", "8310-5", "85354-9"}


def _twin(metrics: dict[Metric, float] = VALUES, n: int = 5) -> Twin:
    twin, off = new_twin(PID), 0
    for i in range(n):
        for metric, value in metrics.items():
            r = Reading(PID, "wrist-1", metric, value + 0.1 * i, T0 + i * 10_000, off, 1.0)
            twin, _ = step(twin, r, Position(0, off))
            off += 1
    return twin


def _valid_r4(resource: dict[str, Any]) -> None:
    kind = {"Observation": ObservationR4, "Flag": FlagR4, "Bundle": BundleR4}[resource["resourceType"]]
    kind(resource, strict=True)  # raises FHIRValidationError


def _valid_r4b(resource: dict[str, Any]) -> None:
    kind = {"Observation": ObservationR4B, "Flag": FlagR4B, "Bundle": BundleR4B}[resource["resourceType"]]
    kind.model_validate(resource)  # raises pydantic.ValidationError


def _valid(resource: dict[str, Any]) -> None:
    # Through JSON first: what an API serves is JSON, and the models must read exactly that.
    doc = orjson.loads(orjson.dumps(resource))
    _valid_r4(doc)
    _valid_r4b(doc)


def test_the_libraries_validate_the_fhir_versions_we_say() -> None:
    assert r4b_version == "4.3.0"
    with pytest.raises(Exception, match="status"):
        _valid_r4({"resourceType": "Observation", "code": {"text": "x"}})
    with pytest.raises(Exception, match="foo"):
        _valid_r4b({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "foo": 1})


def test_vital_observations_are_valid_r4_in_the_vital_signs_profile() -> None:
    twin = _twin()
    at = T0 + 45_000
    obs = vital_observations(PID, twin, at)
    assert {o["code"]["coding"][0]["code"] for o in obs} == VITAL_LOINC  # activity is not a vital sign
    views = {v.metric: v for v in vital_views(twin, at)}
    for o in obs:
        _valid(o)
        assert o["status"] == "final"
        assert o["meta"]["profile"][0] == "http://hl7.org/fhir/StructureDefinition/vitalsigns"
        assert o["category"][0]["coding"][0] == {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs",
            "display": "Vital Signs"}
        assert o["subject"] == {"reference": f"Patient/{PID}"}
        assert o["effectiveDateTime"] == "2025-11-24T00:00:45.000Z"
        assert PID not in o["id"]
        assert "referenceRange" not in o
        quantities = [o["valueQuantity"]] if "valueQuantity" in o else [c["valueQuantity"] for c in o["component"]]
        for q in quantities:
            assert q["system"] == UCUM
            sd = next(e["valueDecimal"] for e in q["extension"] if e["url"] == UNCERTAINTY_EXTENSION)
            assert sd in {v.sd for v in views.values()}
        assert "95% interval" in o["note"][0]["text"]
    by_code = {o["code"]["coding"][0]["code"]: o for o in obs}
    spo2 = by_code["59408-5"]
    assert [c["code"] for c in spo2["code"]["coding"]] == ["59408-5", "2708-6"]
    assert spo2["valueQuantity"]["code"] == "%"
    assert by_code["8867-4"]["valueQuantity"]["code"] == "/min"
    assert by_code["8867-4"]["valueQuantity"]["value"] == views[Metric.HEART_RATE].estimate
    assert by_code["8310-5"]["valueQuantity"]["code"] == "Cel"
    bp = by_code["85354-9"]
    assert [(c["code"]["coding"][0]["code"], c["valueQuantity"]["code"]) for c in bp["component"]] == [
        ("8480-6", "mm[Hg]"), ("8462-4", "mm[Hg]")]
    assert "valueQuantity" not in bp


def test_young_or_stale_estimates_are_preliminary() -> None:
    young = vital_observations(PID, _twin({Metric.HEART_RATE: 80.0}, n=2), T0 + 10_000)
    assert [o["status"] for o in young] == ["preliminary"]
    twin = _twin({Metric.HEART_RATE: 80.0}, n=5)
    assert vital_observations(PID, twin, T0 + 40_000)[0]["status"] == "final"
    stale = vital_observations(PID, twin, T0 + 40_000 + 5 * 60_000 + 1)
    assert stale[0]["status"] == "preliminary"
    assert "stale" in stale[0]["note"][0]["text"]


def test_a_blood_pressure_panel_with_one_side_marks_the_other_absent() -> None:
    obs = vital_observations(PID, _twin({Metric.BP_SYSTOLIC: 130.0}), T0 + 40_000)
    (bp,) = obs
    _valid(bp)
    assert "valueQuantity" in bp["component"][0]
    assert bp["component"][1]["dataAbsentReason"]["coding"][0]["code"] == "unknown"
    (raw,) = observations_to_wire(bp, T0 + 40_000)
    assert orjson.loads(raw)["metric"] == "bp_systolic"


def test_no_vitals_no_observations() -> None:
    assert vital_observations(PID, new_twin(PID), T0) == []


def test_round_trip_twin_to_fhir_to_wire_gives_the_same_values() -> None:
    twin = _twin()
    at = T0 + 45_000
    obs = vital_observations(PID, twin, at)
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": o} for o in obs]}
    _valid(bundle)
    messages = observations_to_wire(orjson.loads(orjson.dumps(bundle)), now_ms=at)
    readings = [decode(m, PID.encode(), at) for m in messages]
    assert not [r for r in readings if isinstance(r, Rejected)]
    got = {r.metric: r.value for r in readings if not isinstance(r, Rejected)}
    want = {v.metric: v.estimate for v in vital_views(twin, at) if v.metric is not Metric.ACTIVITY}
    assert got == want  # bit for bit: floats survive JSON
    assert {r.measured_at for r in readings if not isinstance(r, Rejected)} == {at}
    assert {r.device_id for r in readings if not isinstance(r, Rejected)} == {FHIR_DEVICE}


def test_ingested_readings_of_one_moment_are_all_applied_and_a_resend_is_a_duplicate() -> None:
    at = T0 + 45_000
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": o} for o in vital_observations(PID, _twin(), at)]}
    messages = observations_to_wire(bundle, now_ms=at)
    twin, outcomes = new_twin(PID), []
    for off, raw in enumerate(messages + messages):
        r = decode(raw, PID.encode(), at)
        assert not isinstance(r, Rejected)
        twin, outcome = step(twin, r, Position(0, off))
        outcomes.append(outcome)
    n = len(messages)
    assert n == 6
    assert outcomes[:n] == [Outcome.APPLIED] * n
    assert outcomes[n:] == [Outcome.DUPLICATE] * n


def _observation(**over: Any) -> dict[str, Any]:
    """A heart rate Observation as another system would send it (after the R4 spec's heart-rate example)."""
    doc: dict[str, Any] = {
        "resourceType": "Observation",
        "id": "heart-rate",
        "meta": {"profile": ["http://hl7.org/fhir/StructureDefinition/vitalsigns"]},
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": "Patient/p-0042"},
        "effectiveDateTime": "2025-11-24T01:30:00+01:00",
        "valueQuantity": {"value": 44, "unit": "beats/minute", "system": UCUM, "code": "/min"},
    }
    doc.update(over)
    return {k: v for k, v in doc.items() if v is not None}


def _one(resource: dict[str, Any]) -> dict[str, Any]:
    _valid(resource)
    (raw,) = observations_to_wire(resource, T0 + 3_600_000)
    msg: dict[str, Any] = orjson.loads(raw)
    return msg


def test_ingest_a_heart_rate_observation() -> None:
    msg = _one(_observation())
    assert msg == {"v": 1, "patient_id": "p-0042", "device_id": FHIR_DEVICE, "metric": "heart_rate", "value": 44.0,
                   "unit": "/min", "measured_at": T0 + 30 * 60_000, "seq": (T0 + 30 * 60_000) * 16}


def test_ingest_units_devices_times_and_statuses() -> None:
    temp = _one(_observation(
        code={"coding": [{"system": "http://loinc.org", "code": "8310-5"}]},
        valueQuantity={"value": 99.5, "unit": "F", "system": UCUM, "code": "[degF]"},
        device={"reference": "Device/thermo-9"}, effectiveDateTime=None, effectiveInstant="2025-11-24T00:00:00.25Z",
        status="amended"))
    assert temp["metric"] == "temperature" and temp["unit"] == "Cel"
    assert temp["value"] == pytest.approx(37.5, abs=1e-12)
    assert temp["device_id"] == "thermo-9" and temp["measured_at"] == T0 + 250
    spo2 = _one(_observation(
        code={"coding": [{"system": "http://loinc.org", "code": "2708-6"}]},
        valueQuantity={"value": 97, "unit": "%", "system": UCUM, "code": "%"},
        subject={"reference": "https://ehr.example/fhir/Patient/p-0042/_history/3"},
        effectiveDateTime=None, effectivePeriod={"start": "2025-11-24T00:00:00Z"}, status="preliminary"))
    assert spo2["metric"] == "spo2" and spo2["value"] == 97.0 and spo2["measured_at"] == T0


def test_ingest_a_blood_pressure_panel() -> None:
    panel = _observation(
        code={"coding": [{"system": "http://loinc.org", "code": "85354-9"}]}, valueQuantity=None,
        component=[
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
             "valueQuantity": {"value": 107, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}},
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
             "valueQuantity": {"value": 60, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}},
        ])
    _valid(panel)
    msgs = [orjson.loads(m) for m in observations_to_wire(panel, T0 + 3_600_000)]
    assert [(m["metric"], m["value"], m["unit"]) for m in msgs] == [
        ("bp_systolic", 107.0, "mm[Hg]"), ("bp_diastolic", 60.0, "mm[Hg]")]
    assert msgs[0]["seq"] < msgs[1]["seq"]


LOINC_CODE = "http://loinc.org"


@pytest.mark.parametrize(("resource", "message"), [
    ({"resourceType": "Patient", "id": "x"}, "expected an Observation"),
    (_observation(status="entered-in-error"), "entered-in-error"),
    (_observation(status="cancelled"), "no usable result"),
    (_observation(status=["final"]), "no usable result"),
    (_observation(valueQuantity={"value": 10**400, "system": UCUM, "code": "/min"}), "out of any range"),
    (_observation(code={"coding": [{"system": LOINC_CODE, "code": "2339-0"}]}), "'2339-0' is not a vital sign"),
    (_observation(code={"coding": [{"system": "http://snomed.info/sct", "code": "364075005"}]}), "no LOINC code"),
    (_observation(valueQuantity={"value": 44, "system": UCUM, "code": "/s"}), "UCUM"),
    (_observation(valueQuantity={"value": 44, "unit": "bpm", "code": "/min"}), "UCUM"),
    (_observation(valueQuantity={"value": "44", "system": UCUM, "code": "/min"}), "must be a number"),
    (_observation(valueQuantity=None, valueString="44"), "no valueQuantity"),
    (_observation(valueQuantity={"value": 400, "system": UCUM, "code": "/min"}), "outside possible"),
    (_observation(subject=None), "no subject"),
    (_observation(subject={"reference": "Group/ward-7"}), "must refer to a Patient"),
    (_observation(subject={"reference": "Patient/has space"}), "patient id must be"),
    (_observation(subject={"reference": "Patient/../../etc"}), "must refer to a Patient"),
    (_observation(device={"reference": "Location/bed-1"}), "must refer to a Device"),
    (_observation(effectiveDateTime=None), "no effective time"),
    (_observation(effectiveDateTime="2025-11-24"), "to the second with a time zone"),
    (_observation(effectiveDateTime="2025-11-24T10:00:00"), "to the second with a time zone"),
    (_observation(effectiveDateTime="2025-02-30T10:00:00Z"), "not a valid date"),
    (_observation(effectiveDateTime="1999-12-31T23:59:59Z"), "before 2000"),
    (_observation(effectiveDateTime="2030-01-01T00:00:00Z"), "h ahead of the feed's clock"),
    # Local time written as UTC (a time-zone slip): half an hour ahead of the feed's clock.
    (_observation(effectiveDateTime="2025-11-24T01:30:00Z"),
     "heart_rate at 2025-11-24T01:30:00.000Z refused: effective time is 30.0 min ahead of the feed's clock; "
     "the allowance is 5.0 min"),
    (_observation(effectiveDateTime="2025-11-24T01:05:01Z"), "effective time is 5.0 min ahead"),
    ({"resourceType": "Bundle", "type": "collection", "entry": []}, "no entries"),
    ({"resourceType": "Bundle", "type": "collection",
      "entry": [{"resource": _observation()}, {"resource": _observation(status="entered-in-error")}]},
     "Bundle entry 1: the Observation is entered-in-error"),
])
def test_ingest_refuses_what_it_cannot_take_with_a_clear_message(resource: dict[str, Any], message: str) -> None:
    with pytest.raises(FhirError, match=message.replace("(", r"\(").replace(".", r"\.")):
        observations_to_wire(resource, T0 + 3_600_000)


def test_ingest_takes_an_observation_exactly_the_allowance_ahead_of_the_feed_clock() -> None:
    (raw,) = observations_to_wire(_observation(effectiveDateTime="2025-11-24T01:05:00Z"), T0 + 3_600_000)
    assert orjson.loads(raw)["measured_at"] == T0 + 3_600_000 + MAX_AHEAD_MS


def test_fhir_error_is_a_value_error_and_not_a_crash_on_garbage() -> None:
    assert issubclass(FhirError, ValueError)
    for junk in ([], "x", None, {"resourceType": "Bundle", "entry": [1]}, {"resourceType": "Observation"},
                 _observation(code=[1]), _observation(component=5, code={"coding": [{"system": LOINC_CODE,
                                                                                      "code": "85354-9"}]})):
        with pytest.raises(FhirError):
            observations_to_wire(junk, T0)  # type: ignore[arg-type]


def test_datetimes() -> None:
    assert parse_datetime_ms("2025-11-24T00:00:00Z", "t") == T0
    assert parse_datetime_ms("2025-11-24T05:30:00.123456+05:30", "t") == T0 + 123
    assert parse_datetime_ms("2025-11-23T19:00:00.5-05:00", "t") == T0 + 500
    assert fhir_instant(T0 + 7) == "2025-11-24T00:00:00.007Z"
    assert parse_datetime_ms(fhir_instant(T0 + 987), "t") == T0 + 987


def _alert(**over: Any) -> OpenAlert:
    base = OpenAlert("a1b2c3d4e5f60718293a4b5c", Condition.CLINICAL, Level.HIGH, T0, T0, 1)
    return OpenAlert(**{**{f: getattr(base, f) for f in base.__slots__}, **over})


def test_alert_flag_is_valid_r4() -> None:
    flag = alert_flag(PID, _alert(), T0 + 60_000)
    _valid(flag)
    assert flag["status"] == "active"
    assert flag["id"] == "a1b2c3d4e5f60718293a4b5c"
    assert flag["subject"] == {"reference": f"Patient/{PID}"}
    assert flag["period"] == {"start": "2025-11-24T00:00:00.000Z"}
    assert flag["category"][0]["coding"][0]["code"] == "clinical"
    assert flag["code"]["coding"][0]["code"] == "clinical"
    assert flag["code"]["text"].startswith("HIGH alert: clinical deterioration")
    priority = flag["extension"][0]
    assert priority["url"] == "http://hl7.org/fhir/StructureDefinition/flag-priority"
    assert priority["valueCodeableConcept"]["coding"][0]["code"] == "PH"
    assert not [e for e in flag["extension"] if e["url"] == ACK_EXTENSION]


def test_an_acknowledged_technical_alert() -> None:
    flag = alert_flag(PID, _alert(condition=Condition.NO_DATA, level=Level.MEDIUM, acknowledged_by="nurse.kim",
                                  acknowledged_at=T0 + 90_000), T0 + 120_000)
    _valid(flag)
    assert flag["category"][0]["coding"][0]["code"] == "safety"
    assert flag["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == "PM"
    (ack,) = [e for e in flag["extension"] if e["url"] == ACK_EXTENSION]
    assert ack["extension"] == [{"url": "by", "valueString": "nurse.kim"},
                                {"url": "at", "valueDateTime": "2025-11-24T00:01:30.000Z"}]
    assert "acknowledged by nurse.kim" in flag["code"]["text"]


# --- fuzz: whatever JSON arrives, observations_to_wire answers with messages that decode or a FhirError --------

_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=10**300, max_value=10**320),
              st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
              st.sampled_from(["Patient/p-1", "Device/d", "8867-4", "85354-9", "http://loinc.org", UCUM, "/min",
                               "[degF]", "final", "2025-11-24T00:00:00Z", "Observation", "Bundle"])),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(
        ["resourceType", "status", "code", "coding", "system", "code", "value", "valueQuantity", "subject",
         "reference", "effectiveDateTime", "component", "entry", "resource", "device", "x"]), c, max_size=4),
    max_leaves=10,
)
_PATHS = [("status",), ("code",), ("code", "coding"), ("subject",), ("subject", "reference"), ("device",),
          ("effectiveDateTime",), ("valueQuantity",), ("valueQuantity", "value"), ("valueQuantity", "code"),
          ("valueQuantity", "system"), ("component",), ("resourceType",)]


@st.composite
def _fhir_inputs(draw: st.DrawFn) -> object:
    if draw(st.booleans()):
        return draw(_json)
    doc: dict[str, Any] = orjson.loads(orjson.dumps(_observation(effectiveDateTime="2025-11-24T00:30:00Z")))
    for path in draw(st.lists(st.sampled_from(_PATHS), max_size=3)):
        holder = doc
        for part in path[:-1]:
            holder = holder.setdefault(part, {}) if isinstance(holder.get(part, {}), dict) else {}
        holder[path[-1]] = draw(_json)
    return {"resourceType": "Bundle", "entry": [{"resource": doc}]} if draw(st.booleans()) else doc


@settings(max_examples=2000, deadline=None, database=None)
@given(_fhir_inputs())
def test_observations_to_wire_never_raises_anything_but_fhir_error(resource: Any) -> None:
    now = T0 + 3_600_000
    try:
        messages = observations_to_wire(resource, now)
    except FhirError as e:
        assert str(e)
        return
    for raw in messages:
        pid = orjson.loads(raw)["patient_id"]
        assert not isinstance(decode(raw, pid.encode(), now), Rejected)
