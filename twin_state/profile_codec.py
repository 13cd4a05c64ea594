"""Profiles as compact versioned MessagePack for Redis (same conventions as ``codec`` for twins)."""

from __future__ import annotations

import msgpack

from twin_state.catalogue import Metric
from twin_state.errors import CorruptProfile
from twin_state.profile import Profile, Status

FORMAT = 1


def pack(p: Profile) -> bytes:
    blob: bytes = msgpack.packb(
        [FORMAT, p.patient_id, p.care_team, p.updated_at, p.status.value, p.age_band, sorted(p.conditions),
         [[m.value, lo, hi] for m, (lo, hi) in sorted(p.targets.items())]],
        use_bin_type=True,
    )
    return blob


def unpack(blob: bytes) -> Profile:
    data = msgpack.unpackb(blob, raw=False)
    if not isinstance(data, list) or not data or data[0] != FORMAT:
        raise CorruptProfile(f"stored profile has format {data[0] if data else None!r}; this twinmon reads {FORMAT}")
    _, pid, team, updated_at, status, age_band, conditions, targets = data
    return Profile(pid, team, updated_at, Status(status), age_band, frozenset(conditions),
                   {Metric(m): (lo, hi) for m, lo, hi in targets})
