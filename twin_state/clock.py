"""How far ahead of the ingest clock a reading may be stamped, and the repair of a twin that an older worker let a
reading from the future into.

A reading's ``measured_at`` is the device's clock; the ingest time is the log's (the Kafka record timestamp, capped
at the worker's wall clock, or the recording clock offline). A device clock a few minutes fast is normal; one hours
fast (a wrong time zone, a reset clock, a typo in a manual entry) would move the vital's filter time ahead, after
which every real reading is "late" and the patient is silenced. ``MAX_AHEAD_MS`` is the allowance; readings beyond
it are refused at the edge (``streams.schema``), and state already stored past it is repaired here on load.
"""

from __future__ import annotations

from dataclasses import replace

from twin_state.twin import Twin

MAX_AHEAD_MS = 5 * 60_000
"""Largest lead of a reading's measured_at over the ingest time that is still believed (device clock drift)."""


def repair_twin(twin: Twin, now_ms: int, allowance_ms: int = MAX_AHEAD_MS) -> Twin:
    """``twin`` without what rests on readings stamped more than ``allowance_ms`` after ``now_ms``.

    A vital whose filter time is in the future is dropped and restarts from its next reading: its estimate rests on
    the bad reading, and keeping the filter would refuse every real one as late. The same for a manual observation
    and for a device's last sequence entry (which would make its real readings look like duplicates); a quality
    tally's clock is brought back to ``now_ms``. Returns ``twin`` itself when nothing is ahead."""
    limit = now_ms + allowance_ms
    if not (any(v.updated_at > limit for v in twin.vitals.values())
            or any(o.measured_at > limit for o in twin.observations.values())
            or any(d.measured_at > limit for d in twin.devices.values())
            or any(q.seen_at > limit for q in twin.quality.values())):
        return twin
    return replace(
        twin,
        vitals={m: v for m, v in twin.vitals.items() if v.updated_at <= limit},
        observations={m: o for m, o in twin.observations.items() if o.measured_at <= limit},
        devices={d: s for d, s in twin.devices.items() if s.measured_at <= limit},
        quality={m: q if q.seen_at <= limit else replace(q, seen_at=now_ms) for m, q in twin.quality.items()},
    )
