from __future__ import annotations

import orjson
import pytest

from streams.enrolment import decode_enrolment, profile_to_wire
from twin_state import profile_codec
from twin_state.catalogue import Metric
from twin_state.profile import HYPERCAPNIC, Profile, Status

GOOD = {"v": 1, "patient_id": "p-1", "care_team": "ward-7", "age_band": "65-79",
        "conditions": [HYPERCAPNIC], "targets": {"spo2": [88, 92]}, "updated_at": 1_763_942_400_000}


def test_valid_enrolment_becomes_a_profile_and_round_trips() -> None:
    p = decode_enrolment(orjson.dumps(GOOD), b"p-1")
    assert isinstance(p, Profile)
    assert p.spo2_scale2 and p.targets == {Metric.SPO2: (88.0, 92.0)} and p.status is Status.ENROLLED
    assert decode_enrolment(profile_to_wire(p), b"p-1") == p
    assert profile_codec.unpack(profile_codec.pack(p)) == p


@pytest.mark.parametrize(
    "change,fragment",
    [
        ({"care_team": ""}, "care_team"),
        ({"age_band": "12"}, "age band"),
        ({"conditions": ["flu"]}, "unknown condition"),
        ({"targets": {"spo2": [95, 90]}}, "increasing"),
        ({"targets": {"consciousness": [0, 1]}}, "not a filtered vital"),
        ({"status": "gone"}, "status"),
        ({"extra": 1}, "extra"),
        ({"updated_at": -1}, "updated_at"),
    ],
)
def test_bad_enrolments_are_refused_with_a_reason(change: dict[str, object], fragment: str) -> None:
    out = decode_enrolment(orjson.dumps({**GOOD, **change}), None)
    assert isinstance(out, str) and fragment in out


def test_garbage_and_key_mismatch_are_refused() -> None:
    assert isinstance(decode_enrolment(b"\\xff{", None), str)
    assert decode_enrolment(orjson.dumps(GOOD), b"other") == "message key is not the patient_id"
