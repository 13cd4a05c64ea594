"""Twins as bytes for Redis (compact MessagePack arrays) and as readable dicts (replay output, ``--json``).

Both carry ``FORMAT``; a reader refuses a format it does not know with an error that says so. Floats are
stored as IEEE doubles (MessagePack) or shortest round-trip text (JSON), so a decoded twin is bit-identical
to the one that was encoded.

The packed layout, version 3 (a MessagePack array)::

    [3, patient_id, partition, offset,
     [[metric, level, trend, p00, p01, p11, updated_at, accepted, last_raw, last_raw_at, last_device,
       run, run_mean, baseline, baseline_var, baseline_minutes, streak,
       slow_level, slow_trend, slow_p00, slow_p01, slow_p11], ...],     # slow_*: nil when there is none
     [[metric, value, measured_at, device], ...],                    # manual observations
     [[metric, valid, total, seen_at], ...],                         # data-quality share
     [[device, seq, measured_at], ...],
     [applied, reinitialised, implausible, innovation, late, duplicate]]

Metrics are stored by name, not by position in the enum, so adding a vital never corrupts stored twins.
Version 2 (the same without the five slow-trend fields) is still read: its twins start their slow trend at
their next reading.
"""

from __future__ import annotations

from typing import Any

import msgpack

from twin_state.catalogue import Metric
from twin_state.errors import CorruptTwin
from twin_state.kalman import LevelTrend
from twin_state.twin import Counts, DeviceState, Observation, Quality, Twin, VitalState

FORMAT = 3
READABLE = frozenset({2, FORMAT})
_SLOW_FIELDS = 17
"""Index of the first slow-trend field in a packed vital."""
_METRICS = {m.value: m for m in Metric}


def pack(twin: Twin) -> bytes:
    blob: bytes = msgpack.packb(
        [
            FORMAT,
            twin.patient_id,
            twin.partition,
            twin.offset,
            [
                [m.value, v.filter.level, v.filter.trend, v.filter.p00, v.filter.p01, v.filter.p11, v.updated_at,
                 v.accepted, v.last_raw, v.last_raw_at, v.last_device, v.run, v.run_mean, v.baseline,
                 v.baseline_var, v.baseline_minutes, v.streak, *_slow_fields(v.slow)]
                for m, v in twin.vitals.items()
            ],
            [[m.value, o.value, o.measured_at, o.device_id] for m, o in twin.observations.items()],
            [[m.value, q.valid, q.total, q.seen_at] for m, q in twin.quality.items()],
            [[d, s.seq, s.measured_at] for d, s in twin.devices.items()],
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
    if data[0] not in READABLE:
        raise CorruptTwin(f"stored twin has format {data[0]!r}; this twinmon reads formats {_readable()}")
    try:
        _, pid, partition, offset, vitals, observations, quality, devices, counts = data
        metric = _METRICS.__getitem__  # a dict look-up rather than Metric(name): 32 -> 31 us per twin
        return Twin(
            patient_id=pid,
            partition=partition,
            offset=offset,
            vitals={
                metric(v[0]): _vital(v) for v in vitals
            },
            observations={metric(o[0]): Observation(o[1], o[2], o[3]) for o in observations},
            quality={metric(q[0]): Quality(q[1], q[2], q[3]) for q in quality},
            devices={d[0]: DeviceState(d[1], d[2]) for d in devices},
            counts=Counts(*counts),
        )
    except KeyError as exc:
        raise CorruptTwin(f"stored twin does not decode: unknown metric {exc}") from exc
    except (ValueError, TypeError, IndexError) as exc:
        raise CorruptTwin(f"stored twin does not decode: {type(exc).__name__}: {exc}") from exc


def _vital(v: list[Any]) -> VitalState:
    return VitalState(LevelTrend(v[1], v[2], v[3], v[4], v[5]), updated_at=v[6], accepted=v[7], last_raw=v[8],
                      last_raw_at=v[9], last_device=v[10], run=v[11], run_mean=v[12], baseline=v[13],
                      baseline_var=v[14], baseline_minutes=v[15], streak=v[16], slow=_slow(v[_SLOW_FIELDS:]))


def _readable() -> str:
    return " and ".join(map(str, sorted(READABLE)))


def _slow_fields(slow: LevelTrend | None) -> list[float | None]:
    return [None] * 5 if slow is None else [slow.level, slow.trend, slow.p00, slow.p01, slow.p11]


def _slow(fields: list[Any]) -> LevelTrend | None:
    if not fields or fields[0] is None:
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
                "slow": None if v.slow is None else _slow_fields(v.slow),
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
            raise CorruptTwin(f"twin has format {data['format']!r}; this twinmon reads formats {_readable()}")
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
