"""Twins as plain JSON-able dicts: the storage format in Redis and the output of ``twinmon replay``.

Floats go through JSON's shortest round-trip representation, so a decoded twin is bit-identical to the one
that was encoded. ``FORMAT`` is bumped whenever the layout changes; a reader refuses layouts it does not know.
"""

from __future__ import annotations

from typing import Any

from twin_state.catalogue import Metric
from twin_state.errors import CorruptTwin
from twin_state.kalman import LevelTrend
from twin_state.twin import Counts, DeviceState, Twin, VitalState

FORMAT = 1


def to_dict(twin: Twin) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "patient_id": twin.patient_id,
        "partition": twin.partition,
        "offset": twin.offset,
        "vitals": {
            metric.value: {
                "level": v.filter.level,
                "trend": v.filter.trend,
                "cov": [v.filter.p00, v.filter.p01, v.filter.p11],
                "updated_at": v.updated_at,
                "accepted": v.accepted,
                "last_raw": v.last_raw,
                "last_raw_at": v.last_raw_at,
                "last_device": v.last_device,
            }
            for metric, v in sorted(twin.vitals.items(), key=lambda kv: kv[0].value)
        },
        "devices": {dev: [d.seq, d.measured_at] for dev, d in sorted(twin.devices.items())},
        "counts": {
            "applied": twin.counts.applied,
            "artefact": twin.counts.artefact,
            "late": twin.counts.late,
            "duplicate": twin.counts.duplicate,
        },
    }


def from_dict(data: dict[str, Any]) -> Twin:
    try:
        if data["format"] != FORMAT:
            raise CorruptTwin(f"twin format {data['format']!r} is not {FORMAT}; upgrade twinmon")
        vitals = {
            Metric(name): VitalState(
                filter=LevelTrend(float(v["level"]), float(v["trend"]), *map(float, v["cov"])),
                updated_at=int(v["updated_at"]),
                accepted=int(v["accepted"]),
                last_raw=float(v["last_raw"]),
                last_raw_at=int(v["last_raw_at"]),
                last_device=str(v["last_device"]),
            )
            for name, v in data["vitals"].items()
        }
        devices = {str(dev): DeviceState(int(s[0]), int(s[1])) for dev, s in data["devices"].items()}
        c = data["counts"]
        return Twin(
            patient_id=str(data["patient_id"]),
            partition=int(data["partition"]),
            offset=int(data["offset"]),
            vitals=vitals,
            devices=devices,
            counts=Counts(int(c["applied"]), int(c["artefact"]), int(c["late"]), int(c["duplicate"])),
        )
    except CorruptTwin:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptTwin(f"stored twin does not decode: {type(exc).__name__}: {exc}") from exc
