"""Wire schema v1 for the ``vitals`` topic, and the validation every message passes before it meets a twin.

A message is JSON, UTF-8, at most ``MAX_MESSAGE_BYTES``::

    {"v": 1, "patient_id": "p-0001", "device_id": "wrist-7f3a", "metric": "heart_rate",
     "value": 72, "unit": "/min", "measured_at": 1763942400000, "seq": 1841, "quality": 0.94}

``decode`` never raises on bad input: it returns a ``Rejected`` with a stable reason code, which the worker
dead-letters together with the original bytes. A reading stamped more than ``MAX_AHEAD_MS`` after its ingest time
is refused (``future_timestamp``): one such reading would move the patient's clocks ahead and silence them
(docs/event-schema.md, "Timestamps and the ingest clock"). Reason codes are part of the public contract (metric labels,
DLQ headers, the README), so they only ever grow.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from twin_state.catalogue import METRICS_BY_NAME, OBSERVATIONS, ObservationSpec, accepts_unit
from twin_state.clock import MAX_AHEAD_MS as MAX_AHEAD_MS  # re-exported: the edge's allowance
from twin_state.twin import Reading

SCHEMA_VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024
EARLIEST_MS = 946_684_800_000  # 2000-01-01T00:00:00Z: nothing older is a live reading
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}")


class Reason(StrEnum):
    TOO_LARGE = "too_large"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    UNSUPPORTED_VERSION = "unsupported_version"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    BAD_ID = "bad_id"
    KEY_MISMATCH = "key_mismatch"
    UNKNOWN_METRIC = "unknown_metric"
    UNIT_MISMATCH = "unit_mismatch"
    NOT_FINITE = "not_finite"
    IMPOSSIBLE_VALUE = "impossible_value"
    BAD_TIMESTAMP = "bad_timestamp"
    """measured_at before 2000."""
    BAD_SEQUENCE = "bad_sequence"
    BAD_QUALITY = "bad_quality"
    BAD_ENROLMENT = "bad_enrolment"
    """On the enrolments topic: a profile that does not validate."""
    BAD_ACTION = "bad_action"
    """On the alert-actions topic: an acknowledgement or resolution that does not validate."""
    FUTURE_TIMESTAMP = "future_timestamp"
    """measured_at more than ``MAX_AHEAD_MS`` after the ingest time."""


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: Reason
    detail: str
    """For the dead-letter header and for people; may quote the message, so it is never logged."""


REQUIRED = ("patient_id", "device_id", "metric", "value", "unit", "measured_at", "seq")


def _load(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    # orjson refuses NaN and Infinity literals; the stdlib parser accepts them, so a message that is JSON
    # but for a non-finite number is told apart from garbage and gets the more useful reason.
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return _NOT_JSON


_NOT_JSON = object()


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def decode(raw: bytes | None, key: bytes | None, ingest_ms: int) -> Reading | Rejected:
    """Validate one ``vitals`` message. ``ingest_ms`` is when the log took it in (the Kafka record timestamp, never
    after the worker's wall clock; the recording clock offline), used only to refuse readings from the future."""
    if raw is None:
        return Rejected(Reason.NOT_JSON, "empty message (tombstone)")
    if len(raw) > MAX_MESSAGE_BYTES:
        return Rejected(Reason.TOO_LARGE, f"{len(raw)} bytes > {MAX_MESSAGE_BYTES}")
    doc = _load(raw)
    if doc is _NOT_JSON:
        return Rejected(Reason.NOT_JSON, "not valid UTF-8 JSON")
    if not isinstance(doc, dict):
        return Rejected(Reason.NOT_OBJECT, f"top level is {type(doc).__name__}, not an object")

    version = doc.get("v", SCHEMA_VERSION)
    if version != SCHEMA_VERSION or isinstance(version, bool):
        return Rejected(Reason.UNSUPPORTED_VERSION, f"schema version {version!r}; this worker reads 1")
    missing = [f for f in REQUIRED if f not in doc or doc[f] is None]
    if missing:
        return Rejected(Reason.MISSING_FIELD, "missing " + ", ".join(missing))

    patient_id, device_id = doc["patient_id"], doc["device_id"]
    metric_name, unit, value = doc["metric"], doc["unit"], doc["value"]
    measured_at, seq, quality = doc["measured_at"], doc["seq"], doc.get("quality")

    for name, v in (("patient_id", patient_id), ("device_id", device_id), ("metric", metric_name), ("unit", unit)):
        if not isinstance(v, str):
            return Rejected(Reason.WRONG_TYPE, f"{name} must be a string")
    spec = METRICS_BY_NAME.get(metric_name)
    codes = spec.codes if isinstance(spec, ObservationSpec) else ()
    coded = bool(codes)
    if coded and not isinstance(value, str):
        return Rejected(Reason.WRONG_TYPE, f"{metric_name} value must be one of the codes {'/'.join(codes)}")
    if not coded and not _is_number(value):
        return Rejected(Reason.WRONG_TYPE, "value must be a number")
    if not isinstance(measured_at, int) or isinstance(measured_at, bool):
        return Rejected(Reason.WRONG_TYPE, "measured_at must be an integer (epoch milliseconds)")
    if not isinstance(seq, int) or isinstance(seq, bool):
        return Rejected(Reason.WRONG_TYPE, "seq must be an integer")
    if quality is not None and not _is_number(quality):
        return Rejected(Reason.WRONG_TYPE, "quality must be a number")

    if ID_PATTERN.fullmatch(patient_id) is None:
        return Rejected(Reason.BAD_ID, "patient_id must be 1-64 of A-Z a-z 0-9 . _ : - (pseudonymous id)")
    if ID_PATTERN.fullmatch(device_id) is None:
        return Rejected(Reason.BAD_ID, "device_id must be 1-64 of A-Z a-z 0-9 . _ : -")
    if key is not None and key != patient_id.encode():
        return Rejected(Reason.KEY_MISMATCH, "message key is not the patient_id; partitioning would break ordering")

    if spec is None:
        return Rejected(Reason.UNKNOWN_METRIC, f"unknown metric {metric_name[:40]!r}")
    if not accepts_unit(spec, unit):
        return Rejected(Reason.UNIT_MISMATCH, f"{spec.metric.value} is measured in {spec.unit!r}, got {unit[:20]!r}")
    if coded:
        if value not in codes:
            return Rejected(Reason.IMPOSSIBLE_VALUE, f"{spec.metric.value} must be one of {'/'.join(codes)}")
        fvalue = float(codes.index(value))
    else:
        try:
            fvalue = float(value)
        except OverflowError:  # an integer with hundreds of digits
            return Rejected(Reason.IMPOSSIBLE_VALUE, f"{spec.metric.value} value out of any range")
    if not math.isfinite(fvalue):
        return Rejected(Reason.NOT_FINITE, "value is NaN or infinite")
    lo, hi = spec.possible
    if not lo <= fvalue <= hi:
        return Rejected(Reason.IMPOSSIBLE_VALUE, f"{spec.metric.value} {fvalue} outside possible {lo}..{hi}")
    if measured_at < EARLIEST_MS:
        return Rejected(Reason.BAD_TIMESTAMP, "measured_at before 2000")
    if measured_at > ingest_ms + MAX_AHEAD_MS:
        return Rejected(Reason.FUTURE_TIMESTAMP, f"measured_at {_span(measured_at - ingest_ms)} ahead of the ingest "
                                                 f"time; the allowance is {_span(MAX_AHEAD_MS)}")
    if not 0 <= seq < 2**63:
        return Rejected(Reason.BAD_SEQUENCE, "seq must be 0 .. 2^63-1")
    fquality: float | None = None
    if quality is not None:
        try:
            fquality = float(quality)
        except OverflowError:  # an integer with hundreds of digits: a crash here would loop the worker
            return Rejected(Reason.BAD_QUALITY, "quality must be within 0..1")
        if not math.isfinite(fquality):
            return Rejected(Reason.NOT_FINITE, "quality is NaN or infinite")
        if not 0.0 <= fquality <= 1.0:
            return Rejected(Reason.BAD_QUALITY, "quality must be within 0..1")

    return Reading(
        patient_id=patient_id,
        device_id=device_id,
        metric=spec.metric,
        value=fvalue,
        measured_at=measured_at,
        seq=seq,
        quality=fquality,
    )


def _span(ms: int) -> str:
    if ms >= 2**53:  # far beyond any clock error: no float formatting of an absurd integer
        return "more than 100,000 years"
    if ms < 3_600_000:
        return f"{ms / 60_000:.1f} min"
    return f"{ms / 3_600_000:.1f} h"


def encode(reading: Reading) -> bytes:
    """The v1 wire form of a reading (used by the simulator and by tests)."""
    doc: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "patient_id": reading.patient_id,
        "device_id": reading.device_id,
        "metric": reading.metric.value,
        "value": _wire_value(reading),
        "unit": _UNITS[reading.metric.value],
        "measured_at": reading.measured_at,
        "seq": reading.seq,
    }
    if reading.quality is not None:
        doc["quality"] = reading.quality
    return orjson.dumps(doc)


_UNITS = {name: spec.unit for name, spec in METRICS_BY_NAME.items()}


def _wire_value(reading: Reading) -> float | str:
    spec = OBSERVATIONS.get(reading.metric)
    if spec is not None and spec.codes:
        return spec.codes[int(reading.value)]
    return reading.value
