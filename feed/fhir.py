"""FHIR R4 (4.0.1) views of twins and alerts, and FHIR vital-sign ``Observation`` ingest. Pure: no I/O, no clock.

Out (for integration with hospital systems):

* ``vital_observations``: one ``Observation`` per vital the twin estimates, in the R4 vital-signs profile
  (``meta.profile`` names the specific one: heartrate, resprate, oxygensat, bodytemp, bp), category
  ``vital-signs``, LOINC code, UCUM ``valueQuantity``. Systolic and diastolic pressure are one ``85354-9`` panel
  with two components; a side the twin has no estimate of carries ``dataAbsentReason`` ``unknown``. Activity
  (step cadence) is not a vital sign and is not exported.

  The value is the Kalman-filtered estimate projected to ``at_ms`` (what ``twin_state.view`` shows), not a raw
  reading. Its uncertainty is on the quantity itself with the core extensions ``iso21090-uncertainty`` (the
  standard deviation, in the value's unit) and ``iso21090-uncertaintyType`` ``N`` (normal), and restated for
  people in ``note`` with the 95 % interval, the trend, and the last raw reading. A ``referenceRange`` is the
  normal range of a population, never the uncertainty of a value, so none is given.

  ``status`` is ``final`` for an estimate resting on at least ``FINAL_AFTER_READINGS`` readings whose latest is
  within the vital's staleness limit, and ``preliminary`` otherwise (a young filter, or a projection across a
  gap in the data that the next reading may move). ``effectiveDateTime`` and ``issued`` are ``at_ms``: the
  moment the estimate describes.

* ``alert_flag``: an open alert as a ``Flag``: status ``active``, category ``clinical`` (NEWS2 now or
  predicted) or ``safety`` (technical: no data, poor signal), the condition as a code of twinmon's own code
  system with the level in the text, the level also as the core ``flag-priority`` extension (PL/PM/PH, the
  IEC 60601-1-8 priorities), ``period.start`` the moment it was raised, and who acknowledged it and when as the
  complex extension ``ACK_EXTENSION`` (sub-extensions ``by`` and ``at``).

In (a second input format for the ``vitals`` topic):

* ``observations_to_wire``: an ``Observation`` or a ``Bundle`` of them -> v1 wire messages that
  ``streams.schema.decode`` accepts. All or nothing: one bad entry refuses the whole bundle with a
  ``FhirError`` that says which entry and why. Accepted:

  - LOINC codes 8867-4 heart rate, 9279-1 respiratory rate, 59408-5 / 2708-6 SpO2, 8310-5 body temperature,
    8480-6 systolic, 8462-4 diastolic, and the 85354-9 panel whose components carry those two (a component
    with ``dataAbsentReason`` instead of a value is skipped);
  - ``valueQuantity`` with ``system`` ``http://unitsofmeasure.org`` and a UCUM code this vital is measured in
    (``UCUM_UNITS``). Body temperature in ``[degF]`` is converted to ``Cel`` (the conversion is exact
    arithmetic); no other unit is converted, anything else is refused;
  - status ``final``, ``amended``, ``corrected`` or ``preliminary``; ``entered-in-error``, ``cancelled``,
    ``registered`` and ``unknown`` are refused (no usable measurement);
  - ``subject`` a reference ``Patient/<id>`` (relative or absolute URL) with an id that matches
    ``streams.schema.ID_PATTERN``; ``effectiveDateTime`` / ``effectiveInstant`` / ``effectivePeriod.start``
    to at least the second with a time zone.

  The device is ``device.reference`` ``Device/<id>`` when given, else ``FHIR_DEVICE``. A FHIR Observation has
  no device sequence number, so ``seq`` is ``measured_at * 16 + the metric's ordinal``: increasing in time for
  one device, distinct for the vitals of one moment (a panel's two pressures are not taken for duplicates),
  and the same again for a re-sent Observation, which the twin then counts as a duplicate.
"""

from __future__ import annotations

import calendar
import hashlib
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from alerts.policy import Condition, Level, OpenAlert
from streams.schema import ID_PATTERN, Reason, Rejected, decode
from twin_state.catalogue import CATALOGUE, Metric
from twin_state.errors import TwinmonError
from twin_state.twin import Twin
from twin_state.view import DEFAULT_STALE_AFTER_MS, VitalView, vital_views

UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
FLAG_CATEGORY = "http://terminology.hl7.org/CodeSystem/flag-category"
FLAG_PRIORITY_EXTENSION = "http://hl7.org/fhir/StructureDefinition/flag-priority"
FLAG_PRIORITY_CODES = "http://hl7.org/fhir/flag-priority-code"
UNCERTAINTY_EXTENSION = "http://hl7.org/fhir/StructureDefinition/iso21090-uncertainty"
UNCERTAINTY_TYPE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/iso21090-uncertaintyType"
PROFILE = "http://hl7.org/fhir/StructureDefinition/"
ALERT_CONDITIONS = "urn:twinmon:fhir:alert-condition"
"""twinmon's own code system for alert conditions (the values of ``alerts.policy.Condition``)."""
ACK_EXTENSION = "urn:twinmon:fhir:alert-acknowledgement"
"""Complex extension on a Flag: sub-extensions ``by`` (valueString, the user) and ``at`` (valueDateTime)."""
FHIR_DEVICE = "fhir"
"""Device id of ingested Observations that name no ``Device/<id>``."""
FINAL_AFTER_READINGS = 3
BP_PANEL = "85354-9"
BP_PANEL_DISPLAY = "Blood pressure panel with all children optional"
SEQ_STRIDE = 16
"""Room for every ``Metric`` ordinal in the ``seq`` of an ingested reading (there are fewer than 16)."""


class FhirError(TwinmonError, ValueError):
    """A FHIR resource twinmon cannot take, with a message meant for the person who sent it."""


@dataclass(frozen=True, slots=True)
class _Vital:
    loinc: tuple[tuple[str, str], ...]
    """(code, display), the first is the primary code."""
    profile: str
    ucum: str
    unit: str
    """Human-readable unit in ``valueQuantity.unit``."""


_VITALS: dict[Metric, _Vital] = {
    Metric.HEART_RATE: _Vital((("8867-4", "Heart rate"),), "heartrate", "/min", "beats/minute"),
    Metric.RESP_RATE: _Vital((("9279-1", "Respiratory rate"),), "resprate", "/min", "breaths/minute"),
    Metric.SPO2: _Vital(
        (("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"),
         ("2708-6", "Oxygen saturation in Arterial blood")),
        "oxygensat", "%", "%"),
    Metric.TEMPERATURE: _Vital((("8310-5", "Body temperature"),), "bodytemp", "Cel", "Cel"),
    Metric.BP_SYSTOLIC: _Vital((("8480-6", "Systolic blood pressure"),), "bp", "mm[Hg]", "mmHg"),
    Metric.BP_DIASTOLIC: _Vital((("8462-4", "Diastolic blood pressure"),), "bp", "mm[Hg]", "mmHg"),
}
_BP = (Metric.BP_SYSTOLIC, Metric.BP_DIASTOLIC)

LOINC_METRICS: dict[str, Metric] = {code: m for m, v in _VITALS.items() for code, _ in v.loinc}
UCUM_UNITS: dict[Metric, tuple[str, ...]] = {
    Metric.HEART_RATE: ("/min", "{beats}/min"),
    Metric.RESP_RATE: ("/min", "{breaths}/min"),
    Metric.SPO2: ("%",),
    Metric.TEMPERATURE: ("Cel", "[degF]"),
    Metric.BP_SYSTOLIC: ("mm[Hg]",),
    Metric.BP_DIASTOLIC: ("mm[Hg]",),
}
"""The UCUM codes accepted on ingest, per vital; ``[degF]`` is converted, the others are the canonical unit."""

ACCEPTED_STATUS = frozenset({"final", "amended", "corrected", "preliminary"})
_METRIC_ORDINAL = {m: i for i, m in enumerate(Metric)}
assert len(_METRIC_ORDINAL) <= SEQ_STRIDE


# --- out: twins and alerts as FHIR ----------------------------------------------------------------------


def fhir_instant(ms: int) -> str:
    """Epoch milliseconds as a FHIR ``instant`` (UTC, millisecond precision)."""
    secs, milli = divmod(ms, 1000)
    return f"{_utc(secs)}.{milli:03d}Z"


def _utc(secs: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))


def _resource_id(*parts: object) -> str:
    """A FHIR id ([A-Za-z0-9.-]{1,64}) that does not carry the patient id in clear."""
    return hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=12).hexdigest()


def _subject(patient_id: str) -> dict[str, str]:
    return {"reference": f"Patient/{patient_id}"}


def _code(metric: Metric) -> dict[str, Any]:
    v = _VITALS[metric]
    return {"coding": [{"system": LOINC, "code": c, "display": d} for c, d in v.loinc], "text": v.loinc[0][1]}


def _quantity(view: VitalView) -> dict[str, Any]:
    v = _VITALS[view.metric]
    return {
        "value": view.estimate,
        "unit": v.unit,
        "system": UCUM,
        "code": v.ucum,
        "extension": [
            {"url": UNCERTAINTY_EXTENSION, "valueDecimal": view.sd},
            {"url": UNCERTAINTY_TYPE_EXTENSION, "valueCode": "N"},
        ],
    }


def _is_final(view: VitalView) -> bool:
    return view.readings >= FINAL_AFTER_READINGS and not view.stale


def _note(view: VitalView) -> str:
    u = _VITALS[view.metric].ucum
    return (
        f"{CATALOGUE[view.metric].display}: twinmon Kalman-filtered estimate {view.estimate:.4g} {u} at the effective"
        f" time, standard deviation {view.sd:.3g} {u} (normal; 95% interval {view.low95:.4g} to {view.high95:.4g}),"
        f" trend {view.trend_per_min:+.3g} {u} per minute; last raw reading {view.last_raw:.4g} {u},"
        f" {view.age_s:.0f} s before; {view.readings} readings accepted"
        f"{'; stale' if view.stale else ''}."
    )


def _observation(patient_id: str, metric: Metric, at_ms: int, final: bool, notes: list[str]) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": _resource_id(patient_id, metric.value, at_ms),
        "meta": {"profile": [PROFILE + "vitalsigns", PROFILE + _VITALS[metric].profile]},
        "status": "final" if final else "preliminary",
        "category": [{
            "coding": [{"system": OBSERVATION_CATEGORY, "code": "vital-signs", "display": "Vital Signs"}],
            "text": "Vital Signs",
        }],
        "code": _code(metric),
        "subject": _subject(patient_id),
        "effectiveDateTime": fhir_instant(at_ms),
        "issued": fhir_instant(at_ms),
        "method": {"text": "twinmon level-and-trend Kalman filter estimate"},
        "note": [{"text": n} for n in notes],
    }


def vital_observations(patient_id: str, twin: Twin, at_ms: int) -> list[dict[str, Any]]:
    """The twin's current vital-sign estimates as FHIR R4 ``Observation`` resources (see the module doc)."""
    views = {v.metric: v for v in vital_views(twin, at_ms, DEFAULT_STALE_AFTER_MS) if v.metric in _VITALS}
    out: list[dict[str, Any]] = []
    for metric, view in views.items():
        if metric in _BP:
            continue
        obs = _observation(patient_id, metric, at_ms, _is_final(view), [_note(view)])
        obs["valueQuantity"] = _quantity(view)
        out.append(obs)
    bp = [views[m] for m in _BP if m in views]
    if bp:
        panel = _observation(patient_id, Metric.BP_SYSTOLIC, at_ms, all(map(_is_final, bp)), [_note(v) for v in bp])
        panel["id"] = _resource_id(patient_id, BP_PANEL, at_ms)
        panel["code"] = {
            "coding": [{"system": LOINC, "code": BP_PANEL, "display": BP_PANEL_DISPLAY}],
            "text": "Blood pressure",
        }
        panel["component"] = [_component(m, views.get(m)) for m in _BP]
        out.append(panel)
    return out


def _component(metric: Metric, view: VitalView | None) -> dict[str, Any]:
    if view is None:
        return {
            "code": _code(metric),
            "dataAbsentReason": {"coding": [{"system": DATA_ABSENT, "code": "unknown", "display": "Unknown"}]},
        }
    return {"code": _code(metric), "valueQuantity": _quantity(view)}


_CONDITION_TEXT = {
    Condition.CLINICAL: "clinical deterioration (NEWS2 now or predicted)",
    Condition.UNCONFIRMED: "unconfirmed reading scoring 3: re-measure",
    Condition.NO_DATA: "no data from the patient's sensors",
    Condition.SIGNAL_QUALITY: "poor signal quality",
}
_PRIORITY = {
    Level.NONE: ("PN", "No alarm"),
    Level.LOW: ("PL", "Low priority"),
    Level.MEDIUM: ("PM", "Medium priority"),
    Level.HIGH: ("PH", "High priority"),
}


def alert_flag(patient_id: str, alert: OpenAlert, at_ms: int) -> dict[str, Any]:
    """An open alert as a FHIR R4 ``Flag`` (see the module doc). ``at_ms`` is ``meta.lastUpdated``."""
    clinical = alert.condition in (Condition.CLINICAL, Condition.UNCONFIRMED)
    priority, priority_display = _PRIORITY[alert.level]
    extensions: list[dict[str, Any]] = [{
        "url": FLAG_PRIORITY_EXTENSION,
        "valueCodeableConcept": {
            "coding": [{"system": FLAG_PRIORITY_CODES, "code": priority, "display": priority_display}],
        },
    }]
    if alert.acknowledged_by is not None:
        ack: list[dict[str, Any]] = [{"url": "by", "valueString": alert.acknowledged_by}]
        if alert.acknowledged_at is not None:
            ack.append({"url": "at", "valueDateTime": fhir_instant(alert.acknowledged_at)})
        extensions.append({"url": ACK_EXTENSION, "extension": ack})
    text = _CONDITION_TEXT[alert.condition]
    flag_id = alert.alert_id if re.fullmatch(r"[A-Za-z0-9.\-]{1,64}", alert.alert_id) else _resource_id(alert.alert_id)
    return {
        "resourceType": "Flag",
        "id": flag_id,
        "meta": {"lastUpdated": fhir_instant(at_ms)},
        "extension": extensions,
        "status": "active",
        "category": [{
            "coding": [{
                "system": FLAG_CATEGORY,
                "code": "clinical" if clinical else "safety",
                "display": "Clinical" if clinical else "Safety",
            }],
        }],
        "code": {
            "coding": [{"system": ALERT_CONDITIONS, "code": alert.condition.value, "display": text}],
            "text": f"{alert.level.name} alert: {text}"
            + (f", acknowledged by {alert.acknowledged_by}" if alert.acknowledged_by is not None else ""),
        },
        "subject": _subject(patient_id),
        "period": {"start": fhir_instant(alert.raised_at)},
        "author": {"display": "twinmon"},
    }


# --- in: FHIR Observations to wire messages -------------------------------------------------------------

_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})"
)
_PATIENT_REF = re.compile(r"(?:.*/)?Patient/([^/]+)(?:/_history/[^/]+)?")
_DEVICE_REF = re.compile(r"(?:.*/)?Device/([^/]+)(?:/_history/[^/]+)?")


def parse_datetime_ms(value: object, what: str) -> int:
    """A FHIR dateTime/instant with a time to the second and a zone, as epoch milliseconds (truncated to ms)."""
    if not isinstance(value, str):
        raise FhirError(f"{what} must be a FHIR dateTime string")
    m = _DATETIME.fullmatch(value)
    if m is None:
        raise FhirError(
            f"{what} {value[:40]!r} must be a date and time to the second with a time zone,"
            " e.g. 2026-01-31T14:05:00Z"
        )
    y, mo, d, h, mi, s = (int(m.group(i)) for i in range(1, 7))
    if not (1 <= mo <= 12 and 1 <= d <= calendar.monthrange(y, mo)[1] and h <= 23 and mi <= 59 and s <= 59):
        raise FhirError(f"{what} {value[:40]!r} is not a valid date and time")
    frac = (m.group(7) or "")[:3].ljust(3, "0")
    zone = m.group(8)
    offset_min = 0
    if zone != "Z":
        zh, zm = int(zone[1:3]), int(zone[4:6])
        if zh > 14 or zm > 59:
            raise FhirError(f"{what} {value[:40]!r} has an impossible time zone")
        offset_min = (zh * 60 + zm) * (1 if zone[0] == "+" else -1)
    secs = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) - offset_min * 60
    return secs * 1000 + int(frac)


def _effective_ms(obs: Mapping[str, Any]) -> int:
    for name in ("effectiveDateTime", "effectiveInstant"):
        if name in obs:
            return parse_datetime_ms(obs[name], name)
    period = obs.get("effectivePeriod")
    if isinstance(period, dict) and "start" in period:
        return parse_datetime_ms(period["start"], "effectivePeriod.start")
    raise FhirError("the Observation has no effective time (effectiveDateTime, effectiveInstant or effectivePeriod)")


def _patient_id(obs: Mapping[str, Any]) -> str:
    subject = obs.get("subject")
    ref = subject.get("reference") if isinstance(subject, dict) else None
    if not isinstance(ref, str):
        raise FhirError("the Observation has no subject reference (subject.reference = 'Patient/<id>')")
    m = _PATIENT_REF.fullmatch(ref)
    if m is None:
        raise FhirError("subject.reference must refer to a Patient ('Patient/<id>')")
    pid = m.group(1)
    if ID_PATTERN.fullmatch(pid) is None:
        raise FhirError("the subject's patient id must be 1-64 of A-Z a-z 0-9 . _ : - (a pseudonymous id)")
    return pid


def _device_id(obs: Mapping[str, Any]) -> str:
    device = obs.get("device")
    if device is None:
        return FHIR_DEVICE
    ref = device.get("reference") if isinstance(device, dict) else None
    m = _DEVICE_REF.fullmatch(ref) if isinstance(ref, str) else None
    if m is None:
        raise FhirError("device.reference must refer to a Device ('Device/<id>')")
    if ID_PATTERN.fullmatch(m.group(1)) is None:
        raise FhirError("the device id must be 1-64 of A-Z a-z 0-9 . _ : -")
    return m.group(1)


def _loinc_codes(concept: object, what: str) -> list[str]:
    codings = concept.get("coding") if isinstance(concept, dict) else None
    if not isinstance(codings, list):
        raise FhirError(f"{what} has no coding")
    return [c["code"] for c in codings if isinstance(c, dict) and c.get("system") == LOINC and isinstance(
        c.get("code"), str)]


def _metric_of(concept: object, what: str) -> Metric | None:
    """The vital a code names; None for the blood pressure panel. Raises on anything else."""
    codes = _loinc_codes(concept, what)
    if BP_PANEL in codes:
        return None
    metrics = {LOINC_METRICS[c] for c in codes if c in LOINC_METRICS}
    if not metrics:
        shown = ", ".join(repr(c[:20]) for c in codes[:5]) or "no LOINC code"
        known = ", ".join([*LOINC_METRICS, BP_PANEL])
        raise FhirError(f"{what}: {shown} is not a vital sign twinmon reads (LOINC {known})")
    if len(metrics) > 1:
        raise FhirError(f"{what} has LOINC codes of different vitals")
    return metrics.pop()


def _value(holder: Mapping[str, Any], metric: Metric, what: str) -> float:
    q = holder.get("valueQuantity")
    if not isinstance(q, dict):
        raise FhirError(f"{what} has no valueQuantity")
    value, system, code = q.get("value"), q.get("system"), q.get("code")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise FhirError(f"{what}: valueQuantity.value must be a number")
    accepted = UCUM_UNITS[metric]
    if system != UCUM or code not in accepted:
        raise FhirError(
            f"{what}: {metric.value} must be in UCUM (system {UCUM}) code {' or '.join(accepted)}, got"
            f" system {str(system)[:40]!r} code {str(code)[:20]!r}"
        )
    try:
        number = float(value)
    except OverflowError:  # an integer with hundreds of digits
        raise FhirError(f"{what}: valueQuantity.value is out of any range") from None
    return (number - 32.0) * 5.0 / 9.0 if code == "[degF]" else number


@dataclass(frozen=True, slots=True)
class _Item:
    patient_id: str
    device_id: str
    metric: Metric
    value: float
    measured_at: int


def _items(obs: Mapping[str, Any]) -> list[_Item]:
    if obs.get("resourceType") != "Observation":
        raise FhirError(f"expected an Observation, got {str(obs.get('resourceType'))[:40]!r}")
    status = obs.get("status")
    if status == "entered-in-error":
        raise FhirError("the Observation is entered-in-error: it was recorded by mistake and is not a measurement")
    if not isinstance(status, str) or status not in ACCEPTED_STATUS:
        raise FhirError(f"status {str(status)[:20]!r} carries no usable result; expected one of"
                        f" {', '.join(sorted(ACCEPTED_STATUS))}")
    patient_id, device_id, at = _patient_id(obs), _device_id(obs), _effective_ms(obs)
    metric = _metric_of(obs.get("code"), "code")
    if metric is not None:
        return [_Item(patient_id, device_id, metric, _value(obs, metric, "the Observation"), at)]
    components = obs.get("component")
    if not isinstance(components, list):
        raise FhirError("the blood pressure panel has no components")
    items = []
    for i, comp in enumerate(components):
        if not isinstance(comp, dict):
            raise FhirError(f"component {i} is not an object")
        m = _metric_of(comp.get("code"), f"component {i} code")
        if m not in _BP:
            raise FhirError(f"component {i} of the blood pressure panel must be systolic or diastolic pressure")
        if "dataAbsentReason" in comp and "valueQuantity" not in comp:
            continue
        items.append(_Item(patient_id, device_id, m, _value(comp, m, f"component {i}"), at))
    if not items:
        raise FhirError("the blood pressure panel carries no value")
    return items


def _observations(resource: object) -> Iterable[tuple[str, Mapping[str, Any]]]:
    if not isinstance(resource, dict):
        raise FhirError("a FHIR resource must be a JSON object")
    if resource.get("resourceType") != "Bundle":
        return [("", resource)]
    entries = resource.get("entry", [])
    if not isinstance(entries, list):
        raise FhirError("Bundle.entry must be a list")
    out = []
    for i, entry in enumerate(entries):
        res = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(res, dict):
            raise FhirError(f"Bundle entry {i}: has no resource")
        out.append((f"Bundle entry {i}: ", res))
    if not out:
        raise FhirError("the Bundle has no entries")
    return out


def observations_to_wire(resource: dict[str, Any], now_ms: int) -> list[bytes]:
    """An Observation or a Bundle of Observations as v1 ``vitals`` messages, ordered by time (see the module doc).

    Each message is checked with ``streams.schema.decode`` (with the patient id as key, ``now_ms`` as the clock),
    so everything returned is accepted by a worker. Raises ``FhirError`` on anything wrong, naming the entry.
    """
    items: list[_Item] = []
    for where, obs in _observations(resource):
        try:
            items.extend(_items(obs))
        except FhirError as e:
            raise FhirError(f"{where}{e}") from None
    items.sort(key=lambda it: (it.measured_at, _METRIC_ORDINAL[it.metric]))
    out = []
    for it in items:
        raw = orjson.dumps({
            "v": 1,
            "patient_id": it.patient_id,
            "device_id": it.device_id,
            "metric": it.metric.value,
            "value": it.value,
            "unit": CATALOGUE[it.metric].unit,
            "measured_at": it.measured_at,
            "seq": it.measured_at * SEQ_STRIDE + _METRIC_ORDINAL[it.metric],
        })
        verdict = decode(raw, it.patient_id.encode(), now_ms)
        if isinstance(verdict, Rejected):
            detail = verdict.detail
            if verdict.reason is Reason.FUTURE_TIMESTAMP:  # in the sender's terms: a time zone or clock slip
                detail = detail.replace("measured_at", "effective time is").replace("the ingest time", "the feed's "
                                                                                    "clock")
            raise FhirError(f"{it.metric.value} at {fhir_instant(it.measured_at)} refused: {detail}")
        out.append(raw)
    return out
