"""The packed twin (what Redis holds): exact round trips, the version-2 blobs of earlier releases still read,
damage refused with a clear error, and the size that keeps a twin under 1 KB of Redis memory."""

from __future__ import annotations

import math
import struct
from dataclasses import replace

import pytest

from simulation.simulator import simulate
from twin_state import codec
from twin_state.catalogue import Metric
from twin_state.errors import CorruptTwin
from twin_state.twin import Position, Reading, Twin, new_twin, step

T0 = 1_790_000_000_000


def simulated_twins(patients: int = 40, seconds: float = 600.0, seed: int = 5) -> list[Twin]:
    twins: dict[str, Twin] = {}
    for i, (_, r) in enumerate(simulate(patients, seconds, 1.0, seed, T0, 0.3)):
        twins[r.patient_id] = step(twins.get(r.patient_id) or new_twin(r.patient_id), r, Position(2, i))[0]
    return list(twins.values())


def bits(twin: Twin) -> list[bytes]:
    """Every double of a twin as its 8 bytes, so -0.0 and 0.0 (equal as numbers) count as different."""
    out: list[bytes] = []
    for v in twin.vitals.values():
        out += [struct.pack("<d", x) for x in (v.filter.level, v.filter.trend, v.filter.p00, v.filter.p01,
                                               v.filter.p11, v.last_raw, v.run_mean, v.baseline,
                                               v.baseline_var, v.baseline_minutes)]
    out += [struct.pack("<d", o.value) for o in twin.observations.values()]
    out += [struct.pack("<dd", q.valid, q.total) for q in twin.quality.values()]
    return out


def test_packed_twins_round_trip_bit_for_bit() -> None:
    for twin in simulated_twins():
        back = codec.unpack(codec.pack(twin))
        assert back == twin
        assert bits(back) == bits(twin)
        assert codec.pack(back) == codec.pack(twin)


@pytest.mark.parametrize("raw", [-0.0, 0.0, 96.0, -3.0, 2.0**53, 1e300, 0.1, math.inf])
def test_whole_numbers_packed_as_integers_decode_to_the_same_double(raw: float) -> None:
    twin = step(new_twin("p1"), Reading("p1", "d1", Metric.HEART_RATE, 70.0, T0, 1, None), Position(0, 0))[0]
    hr = twin.vitals[Metric.HEART_RATE]
    odd = replace(twin, vitals={Metric.HEART_RATE: replace(hr, last_raw=raw, run_mean=raw)})
    back = codec.unpack(codec.pack(odd)).vitals[Metric.HEART_RATE]
    assert struct.pack("<dd", back.last_raw, back.run_mean) == struct.pack("<dd", raw, raw)
    assert isinstance(back.last_raw, float) and isinstance(back.run_mean, float)


def test_a_device_missing_from_the_devices_list_is_kept_by_name() -> None:
    twin = simulated_twins(1, 60.0)[0]
    metric, vital = next(iter(twin.vitals.items()))
    odd = replace(twin, vitals={**twin.vitals, metric: replace(vital, last_device="retired-device")})
    assert codec.unpack(codec.pack(odd)) == odd


# A version-2 blob as twinmon wrote it before format 3 (HEAD fdf223c): heart rate from a wrist device, a
# respiratory rate from a patch and a nurse's ACVPU observation, at partition 3 offset 107.
V2_BLOB = bytes.fromhex(
    "9902a4702d7632036b92dc0011aa68656172745f72617465cb405243220e4fb9bccb3fb1d599323e1347cb3fecc40759efba"
    "e4cb3fc8ba51e6196faacb3fefda2c44a879cfcf000001a0c450cda806cb4052800000000000cf000001a0c450cda8a77772"
    "6973742d3100cb0000000000000000cb405200014e2afd98cb3f123fbc8f9505cbcb3fdaaaaaaaaaaaaa00dc0011a9726573"
    "705f72617465cb402f000000000000cb0000000000000000cb4002000000000000cb0000000000000000cb3fb99999999999"
    "9acf000001a0c451084001cb402f000000000000cf000001a0c4510840a770617463682d3100cb0000000000000000cb402f"
    "000000000000cb0000000000000000cb0000000000000000009194ad636f6e7363696f75736e657373cb0000000000000000"
    "cf000001a0c4511bc8a76e757273652d379394aa68656172745f72617465cb4017eab88bea29cecb4017eab88bea29cecf00"
    "0001a0c450cda894a9726573705f72617465cb3ff0000000000000cb3ff0000000000000cf000001a0c451084094ad636f6e"
    "7363696f75736e657373cb3ff0000000000000cb3ff0000000000000cf000001a0c4511bc89393a777726973742d3105cf00"
    "0001a0c450cda893a770617463682d3101cf000001a0c451084093a76e757273652d3701cf000001a0c4511bc89608000000"
    "0000"
)


def test_version_2_blobs_of_earlier_releases_still_read() -> None:
    twin = codec.unpack(V2_BLOB)
    assert (twin.patient_id, twin.partition, twin.offset) == ("p-v2", 3, 107)
    assert twin.vitals[Metric.HEART_RATE].last_device == "wrist-1"
    assert twin.vitals[Metric.HEART_RATE].updated_at == T0 + 25_000
    assert twin.vitals[Metric.RESP_RATE].last_raw == 15.5
    assert twin.observations[Metric.CONSCIOUSNESS].device_id == "nurse-7"
    assert twin.devices["wrist-1"].seq == 5
    assert twin.counts.applied == 8
    # Rewritten in the current format it is the same twin, in two thirds of the bytes.
    again = codec.pack(twin)
    assert codec.unpack(again) == twin
    assert len(again) < 0.7 * len(V2_BLOB)


def test_every_metric_has_its_own_stored_code() -> None:
    assert set(codec.METRIC_CODES) == set(Metric)
    assert len(set(codec.METRIC_CODES.values())) == len(Metric)


def test_a_twin_with_every_wearable_vital_packs_in_about_1060_bytes() -> None:
    # Ten minutes of data: seven vitals (five with a slow trend), three devices. Format 2 took 1,359 bytes on
    # average for these twins without slow trends (format 3 without them: 835). It must stay under Redis'
    # hash-max-listpack-value (2048 in deploy/) so that the patient's hash stays a listpack.
    twins = simulated_twins()
    assert all(len(t.vitals) >= 6 for t in twins)
    sizes = [len(codec.pack(t)) for t in twins]
    assert sum(sizes) / len(sizes) < 1100, sizes
    assert max(sizes) < 2048 - 100


@pytest.mark.parametrize("blob, match", [
    (b"", "not MessagePack"),
    (b"\xc1", "not MessagePack"),
    (b"\x93\x03\xa1p\x00", "does not decode"),                 # format 3, too few fields
    (b"\x91\x63", "format 99"),                                # [99]
    (b"\xa4twin", "not a versioned record"),
])
def test_damaged_or_unknown_blobs_are_refused_with_what_is_wrong(blob: bytes, match: str) -> None:
    with pytest.raises(CorruptTwin, match=match):
        codec.unpack(blob)


def test_an_unknown_metric_code_is_refused() -> None:
    twin = simulated_twins(1, 60.0)[0]
    blob = bytearray(codec.pack(twin))
    data = codec.msgpack.unpackb(bytes(blob))
    data[5][0][0] = 77
    with pytest.raises(CorruptTwin, match="unknown metric"):
        codec.unpack(codec.msgpack.packb(data))
