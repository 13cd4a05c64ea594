"""Twins as bytes for Redis (compact MessagePack arrays) and as readable dicts (replay output, ``--json``).

Both carry ``FORMAT``; a reader refuses a format it does not know with an error that says so. Floats are
stored as IEEE doubles (MessagePack) or shortest round-trip text (JSON), so a decoded twin is bit-identical
to the one that was encoded.

The packed layout, version 3 (a MessagePack array; ``PACKED``)::

    [3, patient_id, partition, offset, t0,
     [[metric, level, trend, p00, p01, p11, t0 - updated_at, accepted, last_raw, updated_at - last_raw_at,
       last_device, run, run_mean, baseline, baseline_var, baseline_minutes, streak,
       slow_level, slow_trend, slow_p00, slow_p01, slow_p11,         # slow_*: absent when there is none
       run_ref, unconfirmed, t0 - unconfirmed_at], ...],             # absent with no run and nothing unconfirmed
     [[metric, value, t0 - measured_at, device], ...],               # manual observations
     [[metric, valid, total or nil if equal to valid, t0 - seen_at], ...],   # data-quality share
     [[device, seq, t0 - measured_at], ...],
     [applied, reinitialised, implausible, innovation, late, duplicate]]

Smaller than version 2 with the same fields: 1,359 -> 835 bytes on average for a simulated patient after ten
minutes of data (seven vitals, three devices), 1,018 -> 616 after one minute; packing costs ~3 us more. (The
slow trends that version 3 adds take it to ~1,060 bytes.)
Metrics are stored as fixed small codes (``METRIC_CODES``, never renumbered, so adding a vital never corrupts
stored twins); a vital's ``last_device`` as its index in the devices list (the device id itself if it is not
there); times as offsets from ``t0``, the twin's newest time, which fit in 1-5 bytes instead of 9; a raw
reading or run mean that is a whole number as an integer; a quality total equal to the valid count as nil.
The slow trend of a scored vital (``VitalState.slow``) follows its row's 17 fields, or is absent. Every double
decodes to itself: a decoded twin is bit-identical to the one that was encoded. Version 2 blobs (metric names,
absolute times, device ids per vital, no slow trend) are still read, so stored twins survive an upgrade; their
slow trends start at their next reading.
"""

from __future__ import annotations

import math
from typing import Any

import msgpack

from twin_state.catalogue import Metric
from twin_state.errors import CorruptTwin
from twin_state.kalman import LevelTrend
from twin_state.twin import Counts, DeviceState, Observation, Quality, Twin, VitalState

FORMAT = 3
"""Version of the readable form (``to_dict``/``from_dict``); version 2 (no slow trends) is still read."""
READABLE = frozenset({2, FORMAT})
PACKED = 3
"""Version of the packed form (``pack``); ``unpack`` also reads version 2."""
_METRICS = {m.value: m for m in Metric}
METRIC_CODES: dict[Metric, int] = {
    Metric.HEART_RATE: 0, Metric.SPO2: 1, Metric.RESP_RATE: 2, Metric.TEMPERATURE: 3, Metric.BP_SYSTOLIC: 4,
    Metric.BP_DIASTOLIC: 5, Metric.ACTIVITY: 6, Metric.CONSCIOUSNESS: 7, Metric.O2_FLOW: 8,
}
"""Stored codes of the metrics. Append new metrics with new codes; never change or reuse one."""
_BY_CODE = {code: m for m, code in METRIC_CODES.items()}


def _newest(twin: Twin) -> int:
    times = [v.updated_at for v in twin.vitals.values()]
    times += [d.measured_at for d in twin.devices.values()]
    return max(times) if times else 0


def _whole(x: float) -> float | int:
    """A double that is a whole number (a raw reading of 96, a run mean of 0) as an int: 1-3 bytes, not 9.
    ``float()`` of it is the same double again; -0.0 and values beyond 2**53 stay doubles."""
    if x.is_integer() and abs(x) < 2**53 and (x != 0.0 or math.copysign(1.0, x) > 0):
        return int(x)
    return x


def _unless_valid(q: Quality) -> float | None:
    """A vital's total reading count, or nil when it equals the valid count (every reading was valid)."""
    return None if q.total == q.valid and q.total != 0.0 else q.total


def pack(twin: Twin) -> bytes:
    t0 = _newest(twin)
    code = METRIC_CODES.__getitem__
    device_index = {d: i for i, d in enumerate(twin.devices)}
    blob: bytes = msgpack.packb(
        [
            PACKED,
            twin.patient_id,
            twin.partition,
            twin.offset,
            t0,
            [
                [code(m), v.filter.level, v.filter.trend, v.filter.p00, v.filter.p01, v.filter.p11,
                 t0 - v.updated_at, v.accepted, _whole(v.last_raw), v.updated_at - v.last_raw_at,
                 device_index.get(v.last_device, v.last_device), v.run, _whole(v.run_mean), v.baseline,
                 v.baseline_var, v.baseline_minutes, v.streak, *_slow_fields(v.slow), *_step_fields(v, t0)]
                for m, v in twin.vitals.items()
            ],
            [[code(m), o.value, t0 - o.measured_at, o.device_id] for m, o in twin.observations.items()],
            [[code(m), q.valid, _unless_valid(q), t0 - q.seen_at] for m, q in twin.quality.items()],
            [[d, s.seq, t0 - s.measured_at] for d, s in twin.devices.items()],
            _counts(twin.counts),
        ],
        use_bin_type=True,
    )
    return blob


def unpack(blob: bytes) -> Twin:
    try:
        data = msgpack.unpackb(blob, raw=False, strict_map_key=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise CorruptTwin(f"stored twin is not MessagePack: {type(exc).__name__}") from exc
    if not isinstance(data, list) or not data:
        raise CorruptTwin("stored twin is not a versioned record")
    if data[0] not in (PACKED, 2):
        raise CorruptTwin(f"stored twin has format {data[0]!r}; this twinmon reads formats 2 and {PACKED}")
    try:
        return _unpack_v3(data) if data[0] == PACKED else _unpack_v2(data)
    except KeyError as exc:
        raise CorruptTwin(f"stored twin does not decode: unknown metric {exc}") from exc
    except (ValueError, TypeError, IndexError) as exc:
        raise CorruptTwin(f"stored twin does not decode: {type(exc).__name__}: {exc}") from exc


def _unpack_v3(data: list[Any]) -> Twin:
    _, pid, partition, offset, t0, vitals, observations, quality, devices, counts = data
    metric = _BY_CODE.__getitem__
    names = [d[0] for d in devices]
    return Twin(
        patient_id=pid,
        partition=partition,
        offset=offset,
        vitals={
            metric(v[0]): VitalState(
                LevelTrend(v[1], v[2], v[3], v[4], v[5]), t0 - v[6], v[7], float(v[8]), t0 - v[6] - v[9],
                names[v[10]] if isinstance(v[10], int) else v[10], v[11], float(v[12]), v[13], v[14], v[15],
                v[16], *_slow_and_step(v[17:], t0),
            )
            for v in vitals
        },
        observations={metric(o[0]): Observation(o[1], t0 - o[2], o[3]) for o in observations},
        quality={metric(q[0]): Quality(q[1], q[1] if q[2] is None else q[2], t0 - q[3]) for q in quality},
        devices={d[0]: DeviceState(d[1], t0 - d[2]) for d in devices},
        counts=Counts(*counts),
    )


def _unpack_v2(data: list[Any]) -> Twin:
    _, pid, partition, offset, vitals, observations, quality, devices, counts = data
    metric = _METRICS.__getitem__  # a dict look-up rather than Metric(name): 32 -> 31 us per twin
    return Twin(
        patient_id=pid,
        partition=partition,
        offset=offset,
        vitals={metric(v[0]): VitalState(LevelTrend(v[1], v[2], v[3], v[4], v[5]), *v[6:17]) for v in vitals},
        observations={metric(o[0]): Observation(o[1], o[2], o[3]) for o in observations},
        quality={metric(q[0]): Quality(q[1], q[2], q[3]) for q in quality},
        devices={d[0]: DeviceState(d[1], d[2]) for d in devices},
        counts=Counts(*counts),
    )


def _slow_fields(slow: LevelTrend | None) -> list[float]:
    return [] if slow is None else [slow.level, slow.trend, slow.p00, slow.p01, slow.p11]


def _step_fields(v: VitalState, t0: int) -> list[Any]:
    if v.run == 0 and v.unconfirmed is None:
        return []
    return [v.run_ref, None if v.unconfirmed is None else _whole(v.unconfirmed),
            None if v.unconfirmed is None else t0 - v.unconfirmed_at]


def _slow_and_step(rest: list[Any], t0: int) -> tuple[LevelTrend | None, float | None, int, float]:
    """A packed row's optional tail: the slow trend (5 fields) and the step state (3), each present or not."""
    if len(rest) not in (0, 3, 5, 8):
        raise ValueError(f"vital row has {17 + len(rest)} fields: a damaged slow trend or step state")
    slow = _slow(rest[:5]) if len(rest) >= 5 else None
    step = rest[5:] if len(rest) >= 5 else rest
    if not step:
        return slow, None, 0, 0.0
    run_ref, unconfirmed, ago = step
    return slow, None if unconfirmed is None else float(unconfirmed), 0 if ago is None else t0 - ago, run_ref


def _slow(fields: list[Any]) -> LevelTrend | None:
    if not fields or fields[0] is None:  # absent (packed), or null (readable form)
        return None
    if len(fields) != 5:
        raise ValueError(f"slow trend has {len(fields)} fields, not 5")
    return LevelTrend(*fields)


def _counts(c: Counts) -> list[int]:
    return [c.applied, c.reinitialised, c.implausible, c.innovation, c.late, c.duplicate]


def to_dict(twin: Twin) -> dict[str, Any]:
    """The readable form: what ``twinmon replay`` writes and ``twinmon twin --json`` prints."""
    return {
        "format": FORMAT,
        "patient_id": twin.patient_id,
        "partition": twin.partition,
        "offset": twin.offset,
        "vitals": {
            m.value: {
                "level": v.filter.level,
                "trend": v.filter.trend,
                "cov": [v.filter.p00, v.filter.p01, v.filter.p11],
                "updated_at": v.updated_at,
                "accepted": v.accepted,
                "last_raw": v.last_raw,
                "last_raw_at": v.last_raw_at,
                "last_device": v.last_device,
                "run": [v.run, v.run_mean, v.streak],
                "baseline": [v.baseline, v.baseline_var, v.baseline_minutes],
                "slow": _slow_fields(v.slow) or None,
                "unconfirmed": None if v.unconfirmed is None else [v.unconfirmed, v.unconfirmed_at],
                "run_ref": v.run_ref,
            }
            for m, v in sorted(twin.vitals.items())
        },
        "observations": {
            m.value: {"value": o.value, "measured_at": o.measured_at, "device": o.device_id}
            for m, o in sorted(twin.observations.items())
        },
        "quality": {m.value: [q.valid, q.total, q.seen_at] for m, q in sorted(twin.quality.items())},
        "devices": {dev: [d.seq, d.measured_at] for dev, d in sorted(twin.devices.items())},
        "counts": dict(zip(Counts.__slots__, _counts(twin.counts), strict=True)),
    }


def from_dict(data: dict[str, Any]) -> Twin:
    try:
        if data["format"] not in READABLE:
            raise CorruptTwin(f"twin has format {data['format']!r}; this twinmon reads formats 2 and {FORMAT}")
        return Twin(
            patient_id=str(data["patient_id"]),
            partition=int(data["partition"]),
            offset=int(data["offset"]),
            vitals={
                Metric(name): VitalState(
                    filter=LevelTrend(v["level"], v["trend"], *v["cov"]),
                    updated_at=v["updated_at"], accepted=v["accepted"], last_raw=v["last_raw"],
                    last_raw_at=v["last_raw_at"], last_device=v["last_device"],
                    run=v["run"][0], run_mean=v["run"][1], streak=v["run"][2],
                    baseline=v["baseline"][0], baseline_var=v["baseline"][1], baseline_minutes=v["baseline"][2],
                    slow=_slow(v.get("slow") or []),
                    unconfirmed=None if v.get("unconfirmed") is None else float(v["unconfirmed"][0]),
                    unconfirmed_at=0 if v.get("unconfirmed") is None else int(v["unconfirmed"][1]),
                    run_ref=float(v.get("run_ref", 0.0)),
                )
                for name, v in data["vitals"].items()
            },
            observations={
                Metric(name): Observation(o["value"], o["measured_at"], o["device"])
                for name, o in data["observations"].items()
            },
            quality={Metric(name): Quality(*q) for name, q in data["quality"].items()},
            devices={str(dev): DeviceState(int(s[0]), int(s[1])) for dev, s in data["devices"].items()},
            counts=Counts(**data["counts"]),
        )
    except CorruptTwin:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptTwin(f"twin does not decode: {type(exc).__name__}: {exc}") from exc
