"""A twin as one ``bytearray``, stepped in place: ``step_packed`` is ``twin.step`` without the objects.

``twin.Twin`` (frozen dataclasses, the readable model) is the reference and stays so: ``step_packed(p, reading,
position)`` changes ``p`` in place, and ``to_twin(p)`` afterwards is bit for bit ``twin.step(to_twin(p_before),
reading, position)[0]``, with the same ``Outcome``, for any twin and any reading (``tests/unit/twin_state/
test_packed.py`` holds it to that, reading by reading, on generated streams and on 10,000 simulated patients).
Bit identity comes from doing the same IEEE operations in the same order: the float expressions below are
``twin.py``'s and ``kalman.py``'s, copied, not simplified; change one and you must change the other.

Why: a resident ``Twin`` of ten minutes' data is ~180 Python objects (~9.6 KB), and every reading allocates ~8
new ones and copies three dicts. A ``PackedTwin`` is three objects (itself, one ``bytearray``, a tuple of device
ids) and a step allocates nothing that outlives it.

The layout (little-endian ``struct`` formats, no padding)::

    header  partition q, offset q, counts 6q (applied, reinitialised, implausible, innovation, late, duplicate),
            devices H, vitals B, qualities B, observations B,
            row of each vital (7 B, ``METRIC_CODES`` order; 255: none), of each quality tally (9 B), of each
            manual observation (2 B)
    vitals        rows of _VITAL, in the twin's dict order (a new vital is inserted after the last)
    qualities     rows of _QUALITY (valid d, total d, seen_at q), in dict order
    observations  rows of _OBSERVATION (device H, value d, measured_at q), in dict order
    devices       rows of _DEVICE (seq q, measured_at q), in dict order; always last

Rows sit in the dicts' insertion order because ``codec.pack`` iterates the dicts: the same order gives the same
bytes. Device ids are strings, so they live beside the bytes in ``PackedTwin.names``, one string with each id
between NULs (``"\\0wrist-7f3a\\0patch-01\\0"``: one object of ~50 bytes where a tuple of three ids takes ~260,
and ``str.find`` finds an id as fast as ``tuple.index``; ``decode`` allows no NUL in an id): the devices' ids in dict
order, then any id a vital or an observation names that is no longer a device (``clock.repair_twin`` can drop a
device whose readings a vital still remembers); rows hold indexes into it. Epoch milliseconds, sequence numbers,
offsets and counts are int64 (a ``seq`` may be anything up to 2**63 - 1, beyond a double's exact integers);
``run`` and ``streak`` (never above ``SUSTAINED_RUN``/``LOST_AFTER`` in a stepped twin) are uint16 and
``accepted`` int64; a twin with a value outside these ranges is refused by ``from_twin`` (``ValueError``).

``tobytes``/``frombytes``: the bytearray behind a small header (magic, version, the patient and device ids):
what a later Redis format could store as it is. ``codec.py``'s format is unchanged.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from typing import Final, NamedTuple

from twin_state import codec
from twin_state.catalogue import (
    BASELINE_TAU_MIN,
    CATALOGUE,
    LOST_AFTER,
    NIS_GATE,
    OBSERVATIONS,
    QUALITY_TAU_MIN,
    SLOW,
    SLOW_CORRELATION_MIN,
    STEP_NIS,
    SUSTAINED_RUN,
    Metric,
)
from twin_state.codec import METRIC_CODES
from twin_state.errors import CorruptTwin
from twin_state.kalman import LevelTrend
from twin_state.twin import (
    MIN_QUALITY,
    MOTION_SCALE_STEPS_PER_MIN,
    MS_PER_MIN,
    RUN_CONSISTENCY_SD,
    Counts,
    DeviceState,
    Observation,
    Outcome,
    Position,
    Quality,
    Reading,
    Twin,
    VitalState,
)

# --- layout ---------------------------------------------------------------------------------------------------------

_VITAL_METRICS: Final = tuple(sorted(CATALOGUE, key=METRIC_CODES.__getitem__))
_OBS_METRICS: Final = tuple(sorted(OBSERVATIONS, key=METRIC_CODES.__getitem__))
_ALL_METRICS: Final = tuple(sorted(METRIC_CODES, key=METRIC_CODES.__getitem__))
if [METRIC_CODES[m] for m in _ALL_METRICS] != list(range(len(_ALL_METRICS))) or (
        *_VITAL_METRICS, *_OBS_METRICS) != _ALL_METRICS:
    raise RuntimeError("packed.py assumes METRIC_CODES number the vitals, then the observations, from 0")
NV: Final = len(_VITAL_METRICS)
NQ: Final = len(_ALL_METRICS)
NO: Final = len(_OBS_METRICS)
NONE: Final = 255
"""A slot table's entry for a metric that has no row."""

_SEP: Final = "\0"
_HEAD = struct.Struct("<qq6qHBBB")
_POS = struct.Struct("<qq")
_Q = struct.Struct("<q")
_D = struct.Struct("<d")
_H = struct.Struct("<H")
_COUNTS_AT = 16
_NDEV_AT = 64
_NVIT_AT = 66
_NQUAL_AT = 67
_NOBS_AT = 68
_VSLOT = _HEAD.size                # 69
_QSLOT = _VSLOT + NV               # 76
_OSLOT = _QSLOT + NQ               # 85
_ROWS = _OSLOT + NO                # 87: the first vital row

_VITAL = struct.Struct("<BHHHqqqq17d")
"""flags (1: slow trend, 2: unconfirmed), last_device, run, streak, accepted, updated_at, last_raw_at,
unconfirmed_at, level, trend, p00, p01, p11, last_raw, run_mean, run_ref, baseline, baseline_var, baseline_minutes,
slow level, trend, p00, p01, p11, unconfirmed."""
_VROW = _VITAL.size                # 175
# Where single fields sit within a vital row (the size of the formats before them):
_RUN_STREAK_AT = struct.calcsize("<BH")
_UNCONFIRMED_AT_AT = struct.calcsize("<BHHHqqq")
_LEVEL_AT = struct.calcsize("<BHHHqqqq")
_RUN_MEAN_AT = struct.calcsize("<BHHHqqqq6d")
_UNCONFIRMED_VALUE_AT = struct.calcsize("<BHHHqqqq16d")
_RUN_STREAK = struct.Struct("<HH")
_RUN_MEAN_REF = struct.Struct("<dd")
_SLOW = 1
_UNCONFIRMED = 2
_QUALITY = struct.Struct("<ddq")
_QROW = _QUALITY.size              # 24
_OBSERVATION = struct.Struct("<Hdq")
_OROW = _OBSERVATION.size          # 18
_OBS_AT_AT = struct.calcsize("<Hd")  # measured_at within an observation row
_DEVICE = struct.Struct("<qq")
_DROW = _DEVICE.size               # 16

_COUNT_AT: Final = {outcome: _COUNTS_AT + 8 * i for i, outcome in enumerate(
    (Outcome.APPLIED, Outcome.REINITIALISED, Outcome.IMPLAUSIBLE, Outcome.INNOVATION, Outcome.LATE,
     Outcome.DUPLICATE))}
_APPLIED_AT = _COUNT_AT[Outcome.APPLIED]
_LATE_AT = _COUNT_AT[Outcome.LATE]
_DUPLICATE_AT = _COUNT_AT[Outcome.DUPLICATE]

# Per vital: what _filter needs of the catalogue, as one tuple (a dict look-up and an unpack per reading).
_ACTIVITY_SLOT = _VSLOT + METRIC_CODES[Metric.ACTIVITY]
_FilterSpec = tuple[int, int, float, float, float, bool, float, float, float, bool, float, float, float]
_FILTER_SPECS: Final[dict[Metric, _FilterSpec]] = {}
for _m in _VITAL_METRICS:
    _s, _slow = CATALOGUE[_m], SLOW.get(_m)
    _FILTER_SPECS[_m] = (
        METRIC_CODES[_m], _VSLOT + METRIC_CODES[_m], _s.plausible[0], _s.plausible[1], _s.measurement_noise,
        _s.motion_sensitive, _s.process_noise, _s.level_noise, _s.initial_trend_var, _slow is not None,
        _slow.q if _slow else 0.0, _slow.natural if _slow else 0.0, _slow.initial_trend_var if _slow else 0.0)
_SLOW_DT_FLOOR: Final = SLOW_CORRELATION_MIN / 100.0
_OBS_SLOT: Final = {m: (METRIC_CODES[m], _OSLOT + i) for i, m in enumerate(_OBS_METRICS)}

_EMPTY: Final = bytes(_HEAD.pack(-1, -1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)) + bytes([NONE] * (NV + NQ + NO))


class PackedTwin:
    """One patient's twin: ``buf`` in the layout above, ``names`` its device ids (NUL before, between and after
    them). Mutable: ``step_packed`` changes it in place (and replaces ``buf`` or ``names`` when a row or a device
    is added)."""

    __slots__ = ("buf", "names", "patient_id")

    def __init__(self, patient_id: str, buf: bytearray, names: str = _SEP) -> None:
        self.patient_id = patient_id
        self.buf = buf
        self.names = names

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PackedTwin):
            return NotImplemented
        return (self.patient_id, self.names, self.buf) == (other.patient_id, other.names, other.buf)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"PackedTwin({self.patient_id!r}, {len(self.buf)} bytes, device ids {self.device_ids!r})"

    @property
    def device_ids(self) -> tuple[str, ...]:
        """The ids ``names`` holds: the devices' in order, then those only a vital or an observation names."""
        return _split(self.names)

    @property
    def position(self) -> Position:
        return Position(*_POS.unpack_from(self.buf, 0))

    @property
    def partition(self) -> int:
        return int(_Q.unpack_from(self.buf, 0)[0])

    @property
    def offset(self) -> int:
        return int(_Q.unpack_from(self.buf, 8)[0])

    def copy(self) -> PackedTwin:
        return PackedTwin(self.patient_id, bytearray(self.buf), self.names)


def new_packed(patient_id: str) -> PackedTwin:
    """``twin.new_twin``, packed."""
    return PackedTwin(patient_id, bytearray(_EMPTY))


# --- the step -------------------------------------------------------------------------------------------------------


def step_packed(p: PackedTwin, reading: Reading, position: Position) -> Outcome:
    """``twin.step`` on ``p`` in place: fold ``reading`` (found at ``position`` in its log) into it."""
    buf = p.buf
    partition, offset = _POS.unpack_from(buf, 0)
    if position.partition == partition and position.offset <= offset:
        return Outcome.REDELIVERED

    t = reading.measured_at
    ndev = buf[_NDEV_AT] | buf[_NDEV_AT + 1] << 8
    device_id = reading.device_id
    if _SEP in device_id:
        raise ValueError(f"device id {device_id!r} contains NUL")
    names = p.names
    di = names.find(_SEP + device_id + _SEP)
    if di > 0:
        di = names.count(_SEP, 0, di)
    if 0 <= di < ndev:
        at = len(buf) - (ndev - di) * _DROW
        seq, seen = _DEVICE.unpack_from(buf, at)
        # A lower sequence number with a later timestamp is a device that rebooted, not a retransmission.
        if reading.seq <= seq and t <= seen:
            _POS.pack_into(buf, 0, position.partition, position.offset)
            _Q.pack_into(buf, _DUPLICATE_AT, _Q.unpack_from(buf, _DUPLICATE_AT)[0] + 1)
            return Outcome.DUPLICATE
        _DEVICE.pack_into(buf, at, reading.seq, t)
    else:
        di = _add_device(p, di, ndev, device_id, reading.seq, t)

    metric = reading.metric
    spec = _FILTER_SPECS.get(metric)
    if spec is None:
        code, outcome = _observe(p, reading, di)
    else:
        code, outcome = spec[0], _filter(p, spec, reading, di)
    _quality(p, code, t, 1.0 if outcome is Outcome.APPLIED or outcome is Outcome.REINITIALISED else 0.0)
    buf = p.buf
    _POS.pack_into(buf, 0, position.partition, position.offset)
    at = _COUNT_AT[outcome]
    _Q.pack_into(buf, at, _Q.unpack_from(buf, at)[0] + 1)
    return outcome


def _filter(p: PackedTwin, spec: _FilterSpec, reading: Reading, di: int) -> Outcome:
    """``twin._filter``: the Kalman step with artefact gating, on the vital's row."""
    (_, slot_at, lo, hi, noise, motion, pq, q_level, trend_var, has_slow, slow_q, natural, slow_trend_var) = spec
    z = reading.value
    if not lo <= z <= hi:  # also false for NaN
        return Outcome.IMPLAUSIBLE

    buf = p.buf
    slot = buf[slot_at]
    act = buf[_ACTIVITY_SLOT]
    # ``max(a, b)`` is spelled ``b if a < b else a`` here and below: the same choice (max keeps the first unless the
    # second is greater, so -0.0 and NaN stay as max leaves them) without the call, a tenth of the step's time.
    activity = 0.0
    if act != NONE:
        activity = _D.unpack_from(buf, _ROWS + act * _VROW + _LEVEL_AT)[0]
        if activity < 0.0:
            activity = 0.0
    # twin.measurement_variance
    quality = reading.quality
    if quality is None:
        quality = 1.0
    r = noise / (MIN_QUALITY if quality < MIN_QUALITY else quality)
    if motion and activity > 0.0:
        r *= 1.0 + activity / MOTION_SCALE_STEPS_PER_MIN
    t = reading.measured_at
    if slot == NONE:
        if has_slow:  # slow_step(metric, None, 0.0, z, r): kalman.start(z, r + natural, trend variance)
            row = _VITAL.pack(_SLOW, di, 0, 0, 1, t, t, 0, z, 0.0, r, 0.0, trend_var, z, 0.0, 0.0, z, 0.0, 0.0,
                              z, 0.0, r + natural, 0.0, slow_trend_var, 0.0)
        else:
            row = _VITAL.pack(0, di, 0, 0, 1, t, t, 0, z, 0.0, r, 0.0, trend_var, z, 0.0, 0.0, z, 0.0, 0.0,
                              0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        n = buf[_NVIT_AT]
        end = _ROWS + n * _VROW
        buf = p.buf = bytearray(b"".join((buf[:end], row, buf[end:])))
        buf[slot_at] = n
        buf[_NVIT_AT] = n + 1
        return Outcome.APPLIED

    at = _ROWS + slot * _VROW
    (flags, _, run0, streak0, accepted, updated_at, _, _, level, trend, p00, p01, p11, _, run_mean0, run_ref0,
     baseline, baseline_var, baseline_minutes, sl, st, s00, s01, s11, _) = _VITAL.unpack_from(buf, at)
    if t < updated_at:
        return Outcome.LATE

    dt = (t - updated_at) / MS_PER_MIN
    # kalman.predict
    if dt == 0.0:
        pl, pt, q00, q01, q11 = level, trend, p00, p01, p11
    else:
        dt2 = dt * dt
        q00 = p00 + dt * (2.0 * p01 + dt * p11) + pq * dt2 * dt / 3.0 + q_level * dt
        q01 = p01 + dt * p11 + pq * dt2 / 2.0
        q11 = p11 + pq * dt
        pl, pt = level + dt * trend, trend
    # kalman.innovation
    y, s = z - pl, q00 + r
    refused = y * y > NIS_GATE * s
    run, run_mean, run_ref = 0, 0.0, 0.0
    if run0 > 0:
        d = z - run_ref0
        if (d * d > STEP_NIS * s and (d > 0.0) == (run_mean0 > run_ref0)
                and abs(z - run_mean0) <= RUN_CONSISTENCY_SD * math.sqrt(2.0 * r)):
            run = run0 + 1
            run_mean = run_mean0 + (z - run_mean0) / run
            run_ref = run_ref0
    if run == 0 and y * y > STEP_NIS * s:
        run, run_mean, run_ref = 1, z, pl
    streak = streak0 + 1 if refused else 0
    reinitialised = run >= SUSTAINED_RUN or streak >= LOST_AFTER
    if refused and not reinitialised:
        # replace(current, run=..., run_mean=..., run_ref=..., streak=..., unconfirmed=z, unconfirmed_at=t)
        buf[at] = flags | _UNCONFIRMED
        _RUN_STREAK.pack_into(buf, at + _RUN_STREAK_AT, run, streak)
        _Q.pack_into(buf, at + _UNCONFIRMED_AT_AT, t)
        _RUN_MEAN_REF.pack_into(buf, at + _RUN_MEAN_AT, run_mean, run_ref)
        _D.pack_into(buf, at + _UNCONFIRMED_VALUE_AT, z)
        return Outcome.INNOVATION

    if reinitialised:
        # kalman.start(run_mean, r, trend variance)
        fl, ft, f00, f01, f11 = run_mean, 0.0, r, 0.0, trend_var
    else:
        # kalman.update(predicted, z, r); its ``p00 + r`` is the innovation's ``s``, the same operation.
        k0 = q00 / s
        k1 = q01 / s
        a = 1.0 - k0
        f00 = a * a * q00 + r * k0 * k0
        f01 = a * (q01 - k1 * q00) + r * k0 * k1
        f11 = q11 - 2.0 * k1 * q01 + k1 * k1 * q00 + r * k1 * k1
        fl, ft = pl + k0 * y, pt + k1 * y

    # slow_step(metric, current.slow, dt, z, r)
    if has_slow:
        new_flags = _SLOW
        if flags & _SLOW:
            r_slow = r + natural * SLOW_CORRELATION_MIN / (_SLOW_DT_FLOOR if dt < _SLOW_DT_FLOOR else dt)
            # kalman.step(slow, dt, z, q, r_slow): predict with no level noise, then update
            if dt != 0.0:
                dt2 = dt * dt
                s00 = s00 + dt * (2.0 * s01 + dt * s11) + slow_q * dt2 * dt / 3.0 + 0.0 * dt
                s01 = s01 + dt * s11 + slow_q * dt2 / 2.0
                s11 = s11 + slow_q * dt
                sl = sl + dt * st
            sv = s00 + r_slow
            k0 = s00 / sv
            k1 = s01 / sv
            ys = z - sl
            a = 1.0 - k0
            n00 = a * a * s00 + r_slow * k0 * k0
            n01 = a * (s01 - k1 * s00) + r_slow * k0 * k1
            n11 = s11 - 2.0 * k1 * s01 + k1 * k1 * s00 + r_slow * k1 * k1
            sl, st, s00, s01, s11 = sl + k0 * ys, st + k1 * ys, n00, n01, n11
        else:
            sl, st, s00, s01, s11 = z, 0.0, r + natural, 0.0, slow_trend_var
    else:
        new_flags = 0
        sl = st = s00 = s01 = s11 = 0.0

    # twin._accepted
    a = -math.expm1(-dt / BASELINE_TAU_MIN)
    dev = fl - baseline
    if reinitialised:
        run, run_mean, run_ref = 0, 0.0, 0.0
    # else: believed, and (when run is 1) remembered as the possible first reading of a step
    _VITAL.pack_into(buf, at, new_flags, di, run, 0, accepted + 1, t, t, 0, fl, ft, f00, f01, f11, z, run_mean,
                     run_ref, baseline + a * dev, (1.0 - a) * (baseline_var + a * dev * dev), baseline_minutes + dt,
                     sl, st, s00, s01, s11, 0.0)
    return Outcome.REINITIALISED if reinitialised else Outcome.APPLIED


def _observe(p: PackedTwin, reading: Reading, di: int) -> tuple[int, Outcome]:
    """``twin._observe``: the latest manual observation by measured-at stands."""
    code, slot_at = _OBS_SLOT[reading.metric]
    buf = p.buf
    slot = buf[slot_at]
    t = reading.measured_at
    if slot == NONE:
        n = buf[_NOBS_AT]
        end = _ROWS + buf[_NVIT_AT] * _VROW + buf[_NQUAL_AT] * _QROW + n * _OROW
        buf = p.buf = bytearray(b"".join((buf[:end], _OBSERVATION.pack(di, reading.value, t), buf[end:])))
        buf[slot_at] = n
        buf[_NOBS_AT] = n + 1
        return code, Outcome.APPLIED
    at = _ROWS + buf[_NVIT_AT] * _VROW + buf[_NQUAL_AT] * _QROW + slot * _OROW
    if t < _Q.unpack_from(buf, at + _OBS_AT_AT)[0]:
        return code, Outcome.LATE
    _OBSERVATION.pack_into(buf, at, di, reading.value, t)
    return code, Outcome.APPLIED


def _quality(p: PackedTwin, code: int, t: int, valid: float) -> None:
    """``twin._quality``: the vital's exponentially weighted valid and total counts."""
    buf = p.buf
    slot = buf[_QSLOT + code]
    base = _ROWS + buf[_NVIT_AT] * _VROW
    if slot == NONE:
        n = buf[_NQUAL_AT]
        end = base + n * _QROW
        buf = p.buf = bytearray(b"".join((buf[:end], _QUALITY.pack(valid, 1.0, t), buf[end:])))
        buf[_QSLOT + code] = n
        buf[_NQUAL_AT] = n + 1
        return
    at = base + slot * _QROW
    q_valid, q_total, seen_at = _QUALITY.unpack_from(buf, at)
    dt = t - seen_at
    decay = math.exp(-dt / MS_PER_MIN / QUALITY_TAU_MIN) if dt > 0 else 1.0
    _QUALITY.pack_into(buf, at, q_valid * decay + valid, q_total * decay + 1.0, t if t > seen_at else seen_at)


def _add_device(p: PackedTwin, di: int, ndev: int, device_id: str, seq: int, t: int) -> int:
    """A device's first reading (or first since ``repair_twin`` dropped it): its row goes after the last device's,
    as ``twin.step`` adds it to the end of ``devices``; its id moves to ``names[ndev]``. Returns that index."""
    names = _split(p.names)
    if di < 0:
        new_names = (*names[:ndev], device_id, *names[ndev:])
    else:  # named by a vital or an observation, but not a device
        new_names = (*names[:ndev], device_id, *names[ndev:di], *names[di + 1:])
    if len(new_names) > 0xFFFF:
        raise ValueError(f"{len(new_names)} device ids: the packed layout holds 65,535")
    buf = bytearray(b"".join((p.buf, _DEVICE.pack(seq, t))))
    index = [new_names.index(name) for name in names]
    if index != list(range(len(names))):  # ids after the devices moved: renumber the rows' references to them
        _renumber(buf, index)
    _H.pack_into(buf, _NDEV_AT, ndev + 1)
    p.buf, p.names = buf, _join(new_names)
    return ndev


def _join(ids: Sequence[str]) -> str:
    for i in ids:
        if _SEP in i:
            raise ValueError(f"device id {i!r} contains NUL")
    return _SEP + "".join(i + _SEP for i in ids)


def _split(names: str) -> tuple[str, ...]:
    return tuple(names[1:-1].split(_SEP)) if len(names) > 1 else ()


def _renumber(buf: bytearray, index: list[int]) -> None:
    nvit, nqual, nobs = buf[_NVIT_AT], buf[_NQUAL_AT], buf[_NOBS_AT]
    for i in range(nvit):
        at = _ROWS + i * _VROW + 1
        _H.pack_into(buf, at, index[_H.unpack_from(buf, at)[0]])
    base = _ROWS + nvit * _VROW + nqual * _QROW
    for i in range(nobs):
        at = base + i * _OROW
        _H.pack_into(buf, at, index[_H.unpack_from(buf, at)[0]])


# --- reading fields without the readable model --------------------------------------------------------------------

_BRIEF = struct.Struct("<B14xqqqd8xd")
"""From a vital row: flags, updated_at, last_raw_at, unconfirmed_at, level, p00."""
_UPDATED_AT_AT: Final = struct.calcsize("<BHHHq")


class VitalBrief(NamedTuple):
    """The fields of one vital that the processor reads around a step (``twin.VitalState``'s of the same names;
    ``level`` and ``p00`` are its filter's)."""

    updated_at: int
    unconfirmed: float | None
    unconfirmed_at: int
    level: float
    p00: float


def vital_brief(p: PackedTwin, metric: Metric) -> VitalBrief | None:
    """``metric``'s ``VitalBrief`` in ``p``: None when the twin has no such vital (or ``metric`` is a manual
    observation)."""
    code = METRIC_CODES[metric]
    if code >= NV:
        return None
    buf = p.buf
    row = buf[_VSLOT + code]
    if row == NONE:
        return None
    at = _ROWS + row * _VROW
    flags, updated_at, _, unconfirmed_at, level, p00 = _BRIEF.unpack_from(buf, at)
    unconfirmed = _D.unpack_from(buf, at + _UNCONFIRMED_VALUE_AT)[0] if flags & _UNCONFIRMED else None
    return VitalBrief(updated_at, unconfirmed, unconfirmed_at, level, p00)


def census_fields(p: PackedTwin) -> tuple[int, float, float]:
    """The latest ``updated_at`` of any vital (0 with none), and the sums of the quality tallies' ``total`` and
    ``valid``: what ``streams.metrics`` counts of a twin."""
    buf = p.buf
    nvit, nqual = buf[_NVIT_AT], buf[_NQUAL_AT]
    last = 0
    for i in range(nvit):
        t = _Q.unpack_from(buf, _ROWS + i * _VROW + _UPDATED_AT_AT)[0]
        if t > last:
            last = t
    total = valid = 0.0
    base = _ROWS + nvit * _VROW
    for i in range(nqual):
        v, n, _ = _QUALITY.unpack_from(buf, base + i * _QROW)
        total += n
        valid += v
    return last, total, valid


def newest_time(p: PackedTwin) -> int:
    """The latest time anything in ``p`` is stamped with (vitals, observations, devices, quality tallies): what
    ``clock.repair_twin`` checks against the clock. 0 for an empty twin."""
    buf = p.buf
    _, _, _, _, _, _, _, _, ndev, nvit, nqual, nobs = _HEAD.unpack_from(buf, 0)
    newest = 0
    for i in range(nvit):
        t = _Q.unpack_from(buf, _ROWS + i * _VROW + _UPDATED_AT_AT)[0]
        newest = t if t > newest else newest
    base = _ROWS + nvit * _VROW
    for i in range(nqual):
        t = _QUALITY.unpack_from(buf, base + i * _QROW)[2]
        newest = t if t > newest else newest
    base += nqual * _QROW
    for i in range(nobs):
        t = _Q.unpack_from(buf, base + i * _OROW + _OBS_AT_AT)[0]
        newest = t if t > newest else newest
    base += nobs * _OROW
    for i in range(ndev):
        t = _DEVICE.unpack_from(buf, base + i * _DROW)[1]
        newest = t if t > newest else newest
    return newest


# --- to and from the readable model ---------------------------------------------------------------------------------


def from_twin(twin: Twin) -> PackedTwin:
    """``twin`` packed. Raises ``ValueError`` for a twin the layout cannot hold (a metric in the wrong map, a
    count or time beyond int64, a run or streak beyond 65,535, more than 65,535 device ids)."""
    names = list(twin.devices)
    index = {name: i for i, name in enumerate(names)}

    def name_at(name: str) -> int:
        i = index.get(name)
        if i is None:
            i = index[name] = len(names)
            names.append(name)
        return i

    vslots, qslots, oslots = [NONE] * NV, [NONE] * NQ, [NONE] * NO
    try:
        vitals = []
        for i, (m, v) in enumerate(twin.vitals.items()):
            vslots[_code_in(m, CATALOGUE, "vitals")] = i
            f, s = v.filter, v.slow
            flags = (0 if s is None else _SLOW) | (0 if v.unconfirmed is None else _UNCONFIRMED)
            slow = (0.0, 0.0, 0.0, 0.0, 0.0) if s is None else (s.level, s.trend, s.p00, s.p01, s.p11)
            vitals.append(_VITAL.pack(
                flags, name_at(v.last_device), v.run, v.streak, v.accepted, v.updated_at, v.last_raw_at,
                v.unconfirmed_at, f.level, f.trend, f.p00, f.p01, f.p11, v.last_raw, v.run_mean, v.run_ref,
                v.baseline, v.baseline_var, v.baseline_minutes, *slow,
                0.0 if v.unconfirmed is None else v.unconfirmed))
        quality = []
        for i, (m, q) in enumerate(twin.quality.items()):
            qslots[_code_in(m, METRIC_CODES, "quality")] = i
            quality.append(_QUALITY.pack(q.valid, q.total, q.seen_at))
        observations = []
        for i, (m, o) in enumerate(twin.observations.items()):
            oslots[_code_in(m, OBSERVATIONS, "observations") - NV] = i
            observations.append(_OBSERVATION.pack(name_at(o.device_id), o.value, o.measured_at))
        devices = [_DEVICE.pack(d.seq, d.measured_at) for d in twin.devices.values()]
        c = twin.counts
        head = _HEAD.pack(twin.partition, twin.offset, c.applied, c.reinitialised, c.implausible, c.innovation,
                          c.late, c.duplicate, len(twin.devices), len(vitals), len(quality), len(observations))
        if len(names) > 0xFFFF:
            raise ValueError(f"{len(names)} device ids: the packed layout holds 65,535")
    except struct.error as exc:
        raise ValueError(f"twin of {twin.patient_id!r} does not fit the packed layout: {exc}") from exc
    buf = bytearray(b"".join((head, bytes(vslots + qslots + oslots), *vitals, *quality, *observations, *devices)))
    return PackedTwin(twin.patient_id, buf, _join(names))


def _code_in(m: Metric, allowed: Mapping[Metric, object], where: str) -> int:
    if m not in allowed:
        raise ValueError(f"{m!r} cannot be in a twin's {where}")
    return METRIC_CODES[m]


def to_twin(p: PackedTwin) -> Twin:
    """The readable twin ``p`` holds: equal to it field for field, dicts in the same order."""
    buf, names = p.buf, _split(p.names)
    partition, offset, applied, reinit, implausible, innovation, late, duplicate, ndev, nvit, nqual, nobs = (
        _HEAD.unpack_from(buf, 0))
    vitals: dict[Metric, VitalState] = {}
    for i, m in enumerate(_in_row_order(buf, _VSLOT, _VITAL_METRICS, nvit)):
        (flags, device, run, streak, accepted, updated_at, last_raw_at, unconfirmed_at, level, trend, p00, p01,
         p11, last_raw, run_mean, run_ref, baseline, baseline_var, baseline_minutes, sl, st, s00, s01, s11,
         unconfirmed) = _VITAL.unpack_from(buf, _ROWS + i * _VROW)
        vitals[m] = VitalState(
            LevelTrend(level, trend, p00, p01, p11), updated_at, accepted, last_raw, last_raw_at, names[device],
            run, run_mean, baseline, baseline_var, baseline_minutes, streak,
            LevelTrend(sl, st, s00, s01, s11) if flags & _SLOW else None,
            unconfirmed if flags & _UNCONFIRMED else None, unconfirmed_at, run_ref)
    base = _ROWS + nvit * _VROW
    quality: dict[Metric, Quality] = {}
    for i, m in enumerate(_in_row_order(buf, _QSLOT, _ALL_METRICS, nqual)):
        quality[m] = Quality(*_QUALITY.unpack_from(buf, base + i * _QROW))
    base += nqual * _QROW
    observations: dict[Metric, Observation] = {}
    for i, m in enumerate(_in_row_order(buf, _OSLOT, _OBS_METRICS, nobs)):
        device, value, measured_at = _OBSERVATION.unpack_from(buf, base + i * _OROW)
        observations[m] = Observation(value, measured_at, names[device])
    base += nobs * _OROW
    devices = {names[i]: DeviceState(*_DEVICE.unpack_from(buf, base + i * _DROW)) for i in range(ndev)}
    return Twin(p.patient_id, partition, offset, vitals, observations, quality, devices,
                Counts(applied, reinit, implausible, innovation, late, duplicate))


def _in_row_order(buf: bytearray, table: int, metrics: tuple[Metric, ...], n: int) -> list[Metric]:
    order: list[Metric | None] = [None] * n
    for k, m in enumerate(metrics):
        row = buf[table + k]
        if row != NONE:
            order[row] = m
    if None in order:
        raise CorruptTwin("packed twin's slot table does not match its row count")
    return order  # type: ignore[return-value]  # no None left


# --- bytes ----------------------------------------------------------------------------------------------------------

MAGIC = b"TWP"
VERSION = 1
_FILE = struct.Struct("<3sBHI")
"""magic, version, bytes of the patient id, of ``names``; then the patient id and ``names`` (UTF-8), the bytearray."""


def tobytes(p: PackedTwin) -> bytes:
    """``p`` as bytes: its bytearray behind the patient and device ids. ``frombytes`` reads it back exactly."""
    pid = p.patient_id.encode()
    names = p.names.encode()
    return b"".join((_FILE.pack(MAGIC, VERSION, len(pid), len(names)), pid, names, p.buf))


def frombytes(blob: bytes) -> PackedTwin:
    """The ``PackedTwin`` that ``tobytes`` wrote. Raises ``CorruptTwin`` for anything else."""
    try:
        magic, version, npid, nnames = _FILE.unpack_from(blob, 0)
        if magic != MAGIC or version != VERSION:
            raise CorruptTwin(f"not a packed twin of version {VERSION} (magic {magic!r}, version {version})")
        at = _FILE.size + npid
        pid = blob[_FILE.size:at].decode()
        names = blob[at:at + nnames].decode()
        buf = bytearray(blob[at + nnames:])
        *_, ndev, nvit, nqual, nobs = _HEAD.unpack_from(buf, 0)
    except (struct.error, UnicodeDecodeError) as exc:
        raise CorruptTwin(f"packed twin does not decode: {exc}") from exc
    if len(buf) != _ROWS + nvit * _VROW + nqual * _QROW + nobs * _OROW + ndev * _DROW:
        raise CorruptTwin(f"packed twin of {pid!r} is {len(buf)} bytes, which its row counts do not explain")
    if names[:1] != _SEP or names[-1:] != _SEP or ndev > len(_split(names)):
        raise CorruptTwin(f"packed twin of {pid!r} has damaged device ids")
    for table, n, count in ((_VSLOT, NV, nvit), (_QSLOT, NQ, nqual), (_OSLOT, NO, nobs)):
        rows = sorted(r for r in buf[table:table + n] if r != NONE)
        if rows != list(range(count)):
            raise CorruptTwin(f"packed twin of {pid!r} has a damaged slot table")
    return PackedTwin(pid, buf, names)


# --- either stored format -------------------------------------------------------------------------------------------


def encode(twin: Twin | PackedTwin) -> bytes:
    """What a store writes for ``twin``: ``tobytes`` for a packed twin, ``codec.pack`` for a readable one."""
    return tobytes(twin) if isinstance(twin, PackedTwin) else codec.pack(twin)


def decode_twin(blob: bytes) -> Twin:
    """A stored twin in either format (``encode``), as the readable model."""
    return to_twin(frombytes(blob)) if blob[:3] == MAGIC else codec.unpack(blob)


def decode_packed(blob: bytes) -> PackedTwin:
    """A stored twin in either format (``encode``), packed. Raises ``CorruptTwin`` for one neither format reads,
    and for a readable twin the packed layout cannot hold."""
    if blob[:3] == MAGIC:
        return frombytes(blob)
    twin = codec.unpack(blob)
    try:
        return from_twin(twin)
    except ValueError as exc:
        raise CorruptTwin(str(exc)) from exc
