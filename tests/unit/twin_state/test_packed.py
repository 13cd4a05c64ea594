"""The packed twin (``twin_state.packed``) against the readable one (``twin_state.twin``, the oracle): stepped side
by side reading by reading, on generated streams and on 10,000 simulated patients, they must agree after every
step bit for bit (the twin field by field, with every double's bits, every type and every dict's order; the
outcome; ``codec.pack``'s bytes). Round trips through ``from_twin``/``to_twin`` and ``tobytes``/``frombytes`` are
exact, and damaged bytes are refused."""

from __future__ import annotations

import dataclasses
import math
import struct
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulation.simulator import simulate
from tests.unit.twin_state.test_twin_codec import V2_BLOB
from twin_state import codec
from twin_state.catalogue import ACVPU, CATALOGUE, OBSERVATIONS, Metric
from twin_state.clock import repair_twin
from twin_state.errors import CorruptTwin
from twin_state.kalman import LevelTrend
from twin_state.packed import (
    PackedTwin,
    from_twin,
    frombytes,
    new_packed,
    step_packed,
    to_twin,
    tobytes,
)
from twin_state.twin import DeviceState, Observation, Outcome, Position, Reading, Twin, new_twin, step

T0 = 1_763_942_400_000
ALL_METRICS = sorted(Metric)
DEVICES = ["wrist", "patch", "cuff", "nurse-7"]


def exact(x: Any) -> Any:
    """``x`` as nested tuples in which nothing compares equal unless it is the same: doubles by their bits (so
    -0.0 is not 0.0), every value with its type, mappings in their order."""
    if isinstance(x, float):
        return "f", struct.pack("<d", x)
    if isinstance(x, bool | int | str) or x is None:
        return type(x).__name__, x
    if dataclasses.is_dataclass(x):
        return type(x).__name__, tuple(exact(getattr(x, f.name)) for f in dataclasses.fields(x))
    if isinstance(x, dict):
        return "dict", tuple((exact(k), exact(v)) for k, v in x.items())
    raise TypeError(f"exact() does not know {type(x)}")


def assert_same(packed: PackedTwin, twin: Twin) -> None:
    back = to_twin(packed)
    assert back == twin
    assert exact(back) == exact(twin)
    assert codec.pack(back) == codec.pack(twin)


def both(twin: Twin, packed: PackedTwin, reading: Reading, position: Position) -> Twin:
    """One reading through both forms; fails unless they agree. Returns the oracle's twin."""
    after, outcome = step(twin, reading, position)
    assert step_packed(packed, reading, position) is outcome
    assert_same(packed, after)
    return after


def simulated(patients: int, seconds: float, rate: float = 1.0, seed: int = 5, share: float = 0.3) -> list[Twin]:
    twins: dict[str, Twin] = {}
    for i, (_, r) in enumerate(simulate(patients, seconds, rate, seed, T0, share)):
        twins[r.patient_id] = step(twins.get(r.patient_id) or new_twin(r.patient_id), r, Position(2, i))[0]
    return list(twins.values())


# --- generated streams ----------------------------------------------------------------------------------------------

def values(metric: Metric) -> st.SearchStrategy[float]:
    if metric is Metric.CONSCIOUSNESS:
        return st.sampled_from([float(i) for i in range(len(ACVPU))])
    if metric in OBSERVATIONS:
        lo, hi = OBSERVATIONS[metric].possible
        return st.one_of(st.floats(lo, hi), st.sampled_from([0.0, 2.0, 15.0]))
    spec = CATALOGUE[metric]
    (lo, hi), (plo, phi) = spec.possible, spec.plausible
    mid = (plo + phi) / 2
    sd = math.sqrt(spec.measurement_noise)
    return st.one_of(
        st.floats(plo, phi),                                              # anywhere plausible: mostly surprises
        st.sampled_from([plo, phi, mid, -0.0 if plo <= 0.0 else plo]),    # the edges
        st.floats(mid - 3 * sd, mid + 3 * sd),                            # near where the filter will be
        st.sampled_from([mid + 4 * sd, mid + 5 * sd, mid - 4 * sd]),      # steps: consistent surprises repeat
        st.one_of(st.floats(lo, hi), st.sampled_from([lo, hi, math.inf, -math.inf])),  # implausible too
    )


@st.composite
def operations(draw: st.DrawFn, max_size: int = 60) -> list[tuple[Reading, Position] | int]:
    """Readings with their log positions, and now and then (an int) a ``repair_twin`` at that event time."""
    n = draw(st.integers(1, max_size))
    t, offset, partition = T0, -1, 0
    seqs: dict[str, int] = {}
    said: dict[Metric, float] = {}
    # A few metrics per stream, so that each sees runs of readings (steps, refusals, a lost filter), not one or two.
    metrics = draw(st.lists(st.sampled_from(ALL_METRICS), min_size=1, max_size=4, unique=True))
    out: list[tuple[Reading, Position] | int] = []
    for _ in range(n):
        if draw(st.integers(0, 40)) == 0:
            out.append(t - draw(st.sampled_from([0, 60_000, 3_600_000])))
            continue
        t += draw(st.sampled_from([0, 1, 500, 2_000, 5_000, 15_000, 60_000, 900_000, 3_600_000, 3 * 86_400_000,
                                   -1, -30_000, -600_000]))
        metric = draw(st.sampled_from(metrics))
        device = draw(st.sampled_from(DEVICES))
        last = seqs.get(device, -1)
        # decode() refuses a seq outside 0 .. 2**63 - 1, so the top of that range, where a device's count ends
        seq = min(draw(st.sampled_from([last + 1, last + 1, last + 1, last, max(last - 3, 0), 0, 2**63 - 1])),
                  2**63 - 1)
        seqs[device] = max(seq, last)
        quality = draw(st.one_of(st.none(), st.floats(0.0, 1.0), st.sampled_from([0.0, 0.05, 1.0])))
        # the value said before again (a step confirmed), or a new one
        value = said[metric] if metric in said and draw(st.integers(0, 3)) == 0 else draw(values(metric))
        said[metric] = value
        # Mostly the next offset; now and then one already applied (a redelivery), or another partition.
        move = draw(st.sampled_from(["next"] * 6 + ["again", "partition"]))
        if move == "next":
            offset += 1
        elif move == "partition":
            partition, offset = draw(st.integers(0, 3)), draw(st.integers(0, 10**12))
        at = max(offset - draw(st.integers(0, 5)), 0) if move == "again" else offset
        out.append((Reading("p-1", device, metric, value, t, seq, quality), Position(partition, at)))
    return out


def start_twins() -> dict[str, Twin]:
    """Where a generated stream may start: nothing, a simulated twin, one stored before slow trends (format 2),
    and one whose dicts run in an order no stream of readings gives."""
    sim = simulated(3, 600.0, seed=9)[0]
    sim = replace(sim, patient_id="p-1")
    backwards = replace(sim, vitals=dict(reversed(sim.vitals.items())), quality=dict(reversed(sim.quality.items())),
                        devices=dict(reversed(sim.devices.items())))
    return {"new": new_twin("p-1"), "simulated": sim, "v2": replace(codec.unpack(V2_BLOB), patient_id="p-1"),
            "backwards": backwards}


STARTS = start_twins()


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(STARTS)), operations())
def test_generated_streams_step_bit_for_bit_as_the_oracle(start: str, ops: list[tuple[Reading, Position] | int]
                                                          ) -> None:
    twin = STARTS[start]
    packed = from_twin(twin)
    assert_same(packed, twin)
    for op in ops:
        if isinstance(op, int):
            # A stored twin repaired on load (a reading from the future dropped): devices may go while a vital
            # still names one; the packed twin is rebuilt from the repaired one, as a worker would load it.
            twin = repair_twin(twin, op, 0)
            packed = from_twin(twin)
            assert_same(packed, twin)
            continue
        twin = both(twin, packed, *op)
    assert frombytes(tobytes(packed)) == packed


def test_every_outcome_and_path_is_exercised_by_the_generated_streams() -> None:
    """The differential test above is only as good as what its streams reach: run a fixed sample of them and
    require every outcome, every vital's reinitialisation, unconfirmed values, and devices renumbered."""
    seen: set[object] = set()
    strategy = st.tuples(st.sampled_from(sorted(STARTS)), operations())

    @settings(max_examples=200, deadline=None, derandomize=True, database=None)
    @given(strategy)
    def run(example: tuple[str, list[tuple[Reading, Position] | int]]) -> None:
        start, ops = example
        twin = STARTS[start]
        packed = from_twin(twin)
        for op in ops:
            if isinstance(op, int):
                twin = repair_twin(twin, op, 0)
                packed = from_twin(twin)
                seen.add("extra names" if len(packed.names) > len(twin.devices) else "repaired")
                continue
            reading, _ = op
            outcome = step_packed(packed, *op)
            twin, expected = step(twin, *op)
            assert outcome is expected
            seen.add(outcome)
            if outcome is Outcome.REINITIALISED:
                seen.add(("reinitialised", reading.metric))
            vital = twin.vitals.get(reading.metric)
            if vital is not None and vital.unconfirmed is not None:
                seen.add("unconfirmed")
        assert_same(packed, twin)

    run()
    wanted = set(Outcome) | {"unconfirmed", "extra names"}
    assert wanted - seen == set()
    assert len({m for m in CATALOGUE if ("reinitialised", m) in seen}) >= 4


@pytest.mark.parametrize("metric", sorted(CATALOGUE))
@pytest.mark.parametrize("pattern", ["step", "lost"])
def test_a_step_and_a_lost_filter_reinitialise_every_vital_in_both(metric: Metric, pattern: str) -> None:
    """Every vital's REINITIALISED paths, for certain: a step (two consistent surprises on one side, the run) and
    a lost filter (six refusals alternating sides, so no run forms: the streak), each followed by readings."""
    spec = CATALOGUE[metric]
    lo, hi = spec.plausible
    mid, sd = (lo + hi) / 2, math.sqrt(spec.measurement_noise)
    if pattern == "step":
        values = [mid, mid + 0.3 * sd, mid - 0.2 * sd, mid + 12 * sd, mid + 12.5 * sd, mid + 12 * sd]
    else:
        values = [mid, mid + 0.3 * sd, mid - 0.2 * sd] + [mid + (-1) ** k * (10 + k) * sd for k in range(7)]
    values += [values[-1] + 0.1 * sd, values[-1]]
    twin, packed = new_twin("p-1"), new_packed("p-1")
    for i, value in enumerate(values):
        reading = Reading("p-1", "d", metric, min(max(value, lo), hi), T0 + 10_000 * i, i, 0.9)
        twin = both(twin, packed, reading, Position(0, i))
    assert twin.counts.reinitialised >= 1 and twin.counts.innovation >= 1


def test_a_device_that_returns_after_repair_is_renumbered() -> None:
    """The rare path of ``_add_device``: a vital names a device that is no longer one, and another id follows it
    in ``names``; when the first sends again it becomes a device, and every row's reference moves with it."""
    twin = new_twin("p-1")
    packed = from_twin(twin)
    for i, (device, metric, value) in enumerate([("a", Metric.HEART_RATE, 80.0), ("b", Metric.SPO2, 95.0),
                                                 ("c", Metric.RESP_RATE, 16.0), ("nurse", Metric.CONSCIOUSNESS, 1.0)]):
        twin = both(twin, packed, Reading("p-1", device, metric, value, T0 + 1_000 * i, 0), Position(0, i))
    # Every device but "c" sent a reading from the future: repair drops them, the vitals and ACVPU keep the ids.
    future = {d: replace(s, measured_at=T0 + 10**9) for d, s in twin.devices.items() if d != "c"}
    twin = repair_twin(replace(twin, devices={**twin.devices, **future}), T0 + 10_000, 0)
    assert list(twin.devices) == ["c"] and twin.observations[Metric.CONSCIOUSNESS].device_id == "nurse"
    packed = from_twin(twin)
    assert packed.device_ids == ("c", "a", "b", "nurse")
    twin = both(twin, packed, Reading("p-1", "b", Metric.SPO2, 96.0, T0 + 11_000, 5), Position(0, 10))
    assert packed.device_ids == ("c", "b", "a", "nurse")
    twin = both(twin, packed, Reading("p-1", "new", Metric.TEMPERATURE, 37.0, T0 + 12_000, 0), Position(0, 11))
    assert packed.device_ids == ("c", "b", "new", "a", "nurse")
    twin = both(twin, packed, Reading("p-1", "nurse", Metric.O2_FLOW, 2.0, T0 + 13_000, 1), Position(0, 12))
    assert packed.device_ids == ("c", "b", "new", "nurse", "a")
    assert to_twin(packed).vitals[Metric.HEART_RATE].last_device == "a"


# --- simulated patients ---------------------------------------------------------------------------------------------

def with_nurses(readings: Iterable[tuple[float, Reading]], every: int) -> Iterator[Reading]:
    """The simulator's readings with, every ``every`` readings, a nurse's ACVPU or oxygen entry for that patient
    (measured at the reading's time or a little before, so that some arrive late)."""
    for i, (_, r) in enumerate(readings):
        yield r
        if i % every == every - 1:
            k = i // every
            metric = Metric.CONSCIOUSNESS if k % 2 else Metric.O2_FLOW
            value = float(k % len(ACVPU)) if k % 2 else float(k % 4)
            yield Reading(r.patient_id, "nurse-station", metric, value, r.measured_at - 60_000 * (k % 3), k, None)


# 10,000 patients in all: a dense first minute for most (every vital's first readings, its first updates,
# artefacts), a sparse day for many (long gaps between readings), and a dense hour for a few (cuffs, buffered wrist
# uploads arriving late, deterioration and the steps it makes), with nurses' entries throughout.
CORPUS = [
    pytest.param(7_000, 10.0, 1.0, 31, {Outcome.APPLIED, Outcome.IMPLAUSIBLE, Outcome.LATE},
                 id="7000-patients-10s"),
    pytest.param(2_950, 24 * 3600.0, 0.0002, 32, {Outcome.APPLIED}, id="2950-patients-a-sparse-day"),
    pytest.param(50, 3600.0, 0.25, 33, set(Outcome) - {Outcome.DUPLICATE}, id="50-patients-an-hour"),
]


@pytest.mark.parametrize("patients, seconds, rate, seed, expected", CORPUS)
def test_simulated_patients_step_bit_for_bit_as_the_oracle(patients: int, seconds: float, rate: float, seed: int,
                                                           expected: set[Outcome]) -> None:
    twins: dict[str, Twin] = {}
    packs: dict[str, PackedTwin] = {}
    outcomes: set[Outcome] = set()
    for i, r in enumerate(with_nurses(simulate(patients, seconds, rate, seed, T0, 0.5), 97)):
        pid = r.patient_id
        twin = twins.get(pid) or new_twin(pid)
        packed = packs.setdefault(pid, new_packed(pid))
        position = Position(seed % 4, i)
        after, outcome = step(twin, r, position)
        assert step_packed(packed, r, position) is outcome
        back = to_twin(packed)
        assert back == after
        assert codec.pack(back) == codec.pack(after)
        twins[pid] = after
        outcomes.add(outcome)
        if i % 50 == 0:  # a redelivery now and then: a no-op in both
            assert step_packed(packed, r, position) is Outcome.REDELIVERED
            outcomes.add(Outcome.REDELIVERED)
    assert len(twins) == patients
    assert expected <= outcomes
    for pid, twin in twins.items():
        assert exact(to_twin(packs[pid])) == exact(twin)
        assert frombytes(tobytes(packs[pid])) == packs[pid]


# --- round trips ----------------------------------------------------------------------------------------------------

def odd_twins() -> Iterator[Twin]:
    """Twins no simulated stream gives but a stored or repaired one may: every value the layout must keep."""
    base = simulated(1, 600.0, seed=3)[0]
    hr = base.vitals[Metric.HEART_RATE]
    yield base
    yield codec.unpack(V2_BLOB)
    yield new_twin("p-empty")
    yield replace(base, partition=-1, offset=2**63 - 1, devices={d: replace(s, seq=2**63 - 1) for d, s in
                                                                  base.devices.items()})
    yield replace(base, vitals={**base.vitals, Metric.HEART_RATE: replace(
        hr, last_raw=-0.0, run_mean=math.inf, baseline=-math.inf, run=65_535, streak=7, accepted=2**62,
        unconfirmed=-0.0, unconfirmed_at=-5, run_ref=1e-310, last_device="gone", slow=None, last_raw_at=0)})
    yield replace(base, vitals={Metric.ACTIVITY: replace(base.vitals[Metric.ACTIVITY],
                                                         slow=LevelTrend(1.0, -0.0, 2.0, 3.0, 4.0))},
                  observations={Metric.O2_FLOW: Observation(2.0, T0, "nurse"),
                                Metric.CONSCIOUSNESS: Observation(-0.0, -T0, "gone")},
                  quality=dict(reversed(base.quality.items())), devices={})
    yield replace(base, patient_id="pätient ✓", devices={"wrïst ✓": next(iter(base.devices.values()))})


@pytest.mark.parametrize("twin", list(odd_twins()), ids=lambda t: t.patient_id)
def test_from_twin_to_twin_and_bytes_round_trip_exactly(twin: Twin) -> None:
    packed = from_twin(twin)
    assert exact(to_twin(packed)) == exact(twin)
    blob = tobytes(packed)
    again = frombytes(blob)
    assert again == packed and again.buf is not packed.buf
    assert exact(to_twin(again)) == exact(twin)
    assert tobytes(again) == blob


def test_simulated_twins_round_trip_and_pack_to_the_same_bytes() -> None:
    for twin in simulated(40, 600.0):
        packed = from_twin(twin)
        assert exact(to_twin(packed)) == exact(twin)
        assert codec.pack(to_twin(frombytes(tobytes(packed)))) == codec.pack(twin)
        assert len(packed.buf) < 1600


@pytest.mark.parametrize("twin", [
    replace(new_twin("p"), vitals={Metric.CONSCIOUSNESS: next(iter(simulated(1, 60.0)[0].vitals.values()))}),
    replace(new_twin("p"), observations={Metric.HEART_RATE: Observation(1.0, T0, "d")}),
    replace(new_twin("p"), devices={"d": replace(next(iter(simulated(1, 60.0)[0].devices.values())), seq=2**63)}),
    replace(new_twin("p"), offset=-2**63 - 1),
    replace(new_twin("p"), devices={"a\0b": DeviceState(1, T0)}),
    replace(simulated(1, 60.0)[0], vitals={m: replace(v, run=-1) for m, v in simulated(1, 60.0)[0].vitals.items()}),
    replace(simulated(1, 60.0)[0], vitals={m: replace(v, updated_at=1.5)  # type: ignore[arg-type]
                                           for m, v in simulated(1, 60.0)[0].vitals.items()}),
], ids=["vital-that-is-an-observation", "observation-that-is-a-vital", "seq-beyond-int64", "offset-beyond-int64",
        "nul-in-a-device-id",
        "negative-run", "float-time"])
def test_a_twin_the_layout_cannot_hold_is_refused(twin: Twin) -> None:
    with pytest.raises(ValueError):
        from_twin(twin)


def damaged() -> Iterator[tuple[str, bytes]]:
    blob = tobytes(from_twin(simulated(1, 600.0)[0]))
    yield "empty", b""
    yield "magic", b"XXX" + blob[3:]
    yield "version", blob[:3] + b"\x09" + blob[4:]
    yield "truncated", blob[:-1]
    yield "extended", blob + b"\x00"
    yield "names-length", blob[:6] + struct.pack("<I", 10**6) + blob[10:]
    npid = struct.unpack_from("<H", blob, 4)[0]
    yield "names-unterminated", blob[:10 + npid] + b"x" + blob[11 + npid:]
    head = len(blob) - len(from_twin(simulated(1, 600.0)[0]).buf)
    slot = bytearray(blob)
    slot[head + 69] = slot[head + 70]  # two vitals on one row
    yield "slot-table", bytes(slot)


@pytest.mark.parametrize("name, blob", list(damaged()), ids=[n for n, _ in damaged()])
def test_damaged_bytes_are_refused(name: str, blob: bytes) -> None:
    with pytest.raises(CorruptTwin):
        frombytes(blob)


def test_a_device_id_with_a_nul_is_refused_not_mistaken_for_two() -> None:
    packed = new_packed("p")
    step_packed(packed, Reading("p", "a", Metric.HEART_RATE, 70.0, T0, 0), Position(0, 0))
    step_packed(packed, Reading("p", "b", Metric.HEART_RATE, 70.0, T0 + 1, 0), Position(0, 1))
    with pytest.raises(ValueError, match="NUL"):
        step_packed(packed, Reading("p", "a\0b", Metric.HEART_RATE, 70.0, T0 + 2, 0), Position(0, 2))
    assert packed.device_ids == ("a", "b")


def test_a_packed_twin_is_equal_by_value_and_unhashable() -> None:
    a, b = new_packed("p"), new_packed("p")
    assert a == b and a != new_packed("q") and a.position == Position(-1, -1)
    with pytest.raises(TypeError):
        hash(a)
