"""Wire schema v1: what is accepted, and the reason code for everything that is not."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.schema import MAX_AHEAD_MS, MAX_MESSAGE_BYTES, Reason, Rejected, decode, encode
from twin_state.catalogue import Metric
from twin_state.twin import Reading

NOW = 1_763_942_400_000
GOOD: dict[str, Any] = {
    "v": 1, "patient_id": "p-0001", "device_id": "wrist-7f3a", "metric": "heart_rate", "value": 72,
    "unit": "/min", "measured_at": NOW - 1000, "seq": 1841, "quality": 0.94,
}


def msg(**changes: Any) -> bytes:
    doc = {**GOOD, **changes}
    return orjson.dumps({k: v for k, v in doc.items() if v is not _DROP})


_DROP = object()


def test_valid_event_decodes_to_a_reading_in_canonical_form() -> None:
    r = decode(msg(), b"p-0001", NOW)
    assert r == Reading("p-0001", "wrist-7f3a", Metric.HEART_RATE, 72.0, NOW - 1000, 1841, 0.94)
    assert isinstance(r.value, float)


def test_encode_then_decode_round_trips() -> None:
    r = Reading("p-9", "patch-1", Metric.TEMPERATURE, 37.4, NOW, 3, None)
    assert decode(encode(r), b"p-9", NOW) == r


@pytest.mark.parametrize("unit", ["bpm", "beats/min", "/min"])
def test_unit_aliases_are_accepted(unit: str) -> None:
    assert isinstance(decode(msg(unit=unit), None, NOW), Reading)


def test_version_and_quality_are_optional() -> None:
    r = decode(msg(v=_DROP, quality=_DROP), None, NOW)
    assert isinstance(r, Reading) and r.quality is None


@pytest.mark.parametrize(
    "raw,reason",
    [
        (b"", Reason.NOT_JSON),
        (b'{"patient_id": "p-1", ', Reason.NOT_JSON),
        (b"\xff\xfe\x00garbage", Reason.NOT_JSON),
        (b"[" * 5000 + b"]" * 5000, Reason.NOT_JSON),
        (b"[1, 2]", Reason.NOT_OBJECT),
        (b'"text"', Reason.NOT_OBJECT),
        (b"x" * (MAX_MESSAGE_BYTES + 1), Reason.TOO_LARGE),
        (msg(v=2), Reason.UNSUPPORTED_VERSION),
        (msg(v=True), Reason.UNSUPPORTED_VERSION),
        (msg(patient_id=_DROP), Reason.MISSING_FIELD),
        (msg(value=None), Reason.MISSING_FIELD),
        (msg(seq=_DROP), Reason.MISSING_FIELD),
        (msg(value="72"), Reason.WRONG_TYPE),
        (msg(value=True), Reason.WRONG_TYPE),
        (msg(measured_at=1.7e12), Reason.WRONG_TYPE),
        (msg(seq="1"), Reason.WRONG_TYPE),
        (msg(patient_id=17), Reason.WRONG_TYPE),
        (msg(quality="high"), Reason.WRONG_TYPE),
        (msg(patient_id=""), Reason.BAD_ID),
        (msg(patient_id="../../etc/passwd"), Reason.BAD_ID),
        (msg(patient_id="p" * 65), Reason.BAD_ID),
        (msg(device_id="has space"), Reason.BAD_ID),
        (msg(metric="glucose"), Reason.UNKNOWN_METRIC),
        (msg(unit="degF", metric="temperature", value=98.6), Reason.UNIT_MISMATCH),
        (msg(unit="%"), Reason.UNIT_MISMATCH),
        (msg(value=-1), Reason.IMPOSSIBLE_VALUE),
        (msg(metric="spo2", unit="%", value=101), Reason.IMPOSSIBLE_VALUE),
        (msg(value=0).replace(b'"value":0', b'"value":1' + b"0" * 30), Reason.IMPOSSIBLE_VALUE),
        (msg(value=0).replace(b'"value":0', b'"value":1' + b"0" * 400), Reason.IMPOSSIBLE_VALUE),
        (msg(measured_at=-5), Reason.BAD_TIMESTAMP),
        (msg(measured_at=NOW + 25 * 3600 * 1000), Reason.FUTURE_TIMESTAMP),
        (msg(measured_at=NOW + 20 * 3600 * 1000), Reason.FUTURE_TIMESTAMP),
        (msg(measured_at=NOW + MAX_AHEAD_MS + 1), Reason.FUTURE_TIMESTAMP),
        (msg(seq=-1), Reason.BAD_SEQUENCE),
        (msg(quality=1.5), Reason.BAD_QUALITY),
        (msg(quality=-0.1), Reason.BAD_QUALITY),
    ],
)
def test_bad_input_is_rejected_with_its_reason(raw: bytes, reason: Reason) -> None:
    out = decode(raw, None, NOW)
    assert isinstance(out, Rejected), out
    assert out.reason is reason, out.detail


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_non_finite_numbers_are_named_as_such(literal: bytes) -> None:
    raw = msg(value=0).replace(b'"value":0', b'"value":' + literal)
    out = decode(raw, None, NOW)
    assert isinstance(out, Rejected) and out.reason is Reason.NOT_FINITE


def test_nan_quality_is_not_finite() -> None:
    raw = msg(quality=0.5).replace(b'"quality":0.5', b'"quality":NaN')
    out = decode(raw, None, NOW)
    assert isinstance(out, Rejected) and out.reason is Reason.NOT_FINITE


def test_key_must_be_the_patient_id_so_ordering_holds() -> None:
    out = decode(msg(), b"someone-else", NOW)
    assert isinstance(out, Rejected) and out.reason is Reason.KEY_MISMATCH


@pytest.mark.parametrize(
    "metric,unit,lo,hi",
    [("heart_rate", "/min", 0, 350), ("spo2", "%", 0, 100), ("temperature", "Cel", 20, 46),
     ("resp_rate", "/min", 0, 120), ("bp_systolic", "mm[Hg]", 0, 320)],
)
def test_possible_range_edges_are_inclusive(metric: str, unit: str, lo: float, hi: float) -> None:
    for value in (lo, hi):
        assert isinstance(decode(msg(metric=metric, unit=unit, value=value), None, NOW), Reading)
    for value in (lo - 0.01, hi + 0.01):
        out = decode(msg(metric=metric, unit=unit, value=value), None, NOW)
        assert isinstance(out, Rejected) and out.reason is Reason.IMPOSSIBLE_VALUE


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    assert isinstance(decode(raw, None, NOW), (Reading, Rejected))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=2000, deadline=None)
@given(
    st.dictionaries(st.sampled_from(sorted(GOOD)), json_values, max_size=4),
    st.sets(st.sampled_from(sorted(GOOD)), max_size=2),
)
def test_valid_events_with_fields_replaced_or_dropped_never_raise(
    overrides: dict[str, Any], dropped: set[str]
) -> None:
    doc = {k: v for k, v in {**GOOD, **overrides}.items() if k not in dropped}
    out = decode(json.dumps(doc).encode(), None, NOW)
    assert isinstance(out, (Reading, Rejected))
    if not overrides and not dropped - {"v", "quality"}:
        assert isinstance(out, Reading)


@pytest.mark.parametrize("code,index", [("A", 0), ("C", 1), ("V", 2), ("P", 3), ("U", 4)])
def test_consciousness_is_sent_as_an_acvpu_letter(code: str, index: int) -> None:
    r = decode(msg(metric="consciousness", unit="{ACVPU}", value=code), None, NOW)
    assert isinstance(r, Reading) and r.metric is Metric.CONSCIOUSNESS and r.value == index
    assert decode(encode(r), None, NOW) == r


@pytest.mark.parametrize("value,reason", [("X", Reason.IMPOSSIBLE_VALUE), (1, Reason.WRONG_TYPE),
                                          ("alert", Reason.IMPOSSIBLE_VALUE)])
def test_bad_acvpu_codes_are_refused(value: object, reason: Reason) -> None:
    out = decode(msg(metric="consciousness", unit="{ACVPU}", value=value), None, NOW)
    assert isinstance(out, Rejected) and out.reason is reason


def test_oxygen_flow_is_litres_per_minute() -> None:
    assert isinstance(decode(msg(metric="o2_flow", unit="L/min", value=2), None, NOW), Reading)
    out = decode(msg(metric="o2_flow", unit="L/min", value=61), None, NOW)
    assert isinstance(out, Rejected) and out.reason is Reason.IMPOSSIBLE_VALUE
