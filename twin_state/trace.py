"""One patient's twin, replayed reading by reading, with what the filter believed after each one.

Pure, like ``twin.step``, which it calls: the same readings give the same trace. It is what charts and the
filter's evidence tests are made of: for every reading of a filtered vital, its raw value, what the twin did
with it, and the twin's estimate (level and its standard deviation) right after.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

from twin_state.catalogue import CATALOGUE, Metric
from twin_state.twin import Outcome, Position, Reading, Twin, new_twin, step


class TracePoint(NamedTuple):
    t: int
    """The reading's measured-at, epoch milliseconds."""
    raw: float
    outcome: Outcome
    level: float
    """The vital's filtered level right after this reading (``nan`` while the vital has no filter yet)."""
    sd: float
    """Standard deviation of that level, ``sqrt(p00)`` (``nan`` while the vital has no filter yet)."""
    device_id: str


Trace = dict[Metric, list[TracePoint]]
"""Per filtered vital, its readings in processing order. Manual observations are not traced."""


def trace(readings: Iterable[Reading], patient_id: str) -> Trace:
    """Step a new twin for ``patient_id`` through ``readings`` in order; other patients' readings are skipped.

    A reading's log position is its index in ``readings`` (partition 0), as ``twinmon replay`` numbers lines.
    """
    out, _twin = trace_with_twin(readings, patient_id)
    return out


def trace_with_twin(readings: Iterable[Reading], patient_id: str) -> tuple[Trace, Twin]:
    """``trace``, and the twin it ends with."""
    twin = new_twin(patient_id)
    out: Trace = {}
    for offset, reading in enumerate(readings):
        if reading.patient_id != patient_id:
            continue
        twin, outcome = step(twin, reading, Position(0, offset))
        if reading.metric not in CATALOGUE:
            continue
        vital = twin.vitals.get(reading.metric)
        if vital is None:
            level = sd = math.nan
        else:
            level, sd = vital.filter.level, math.sqrt(max(vital.filter.p00, 0.0))
        out.setdefault(reading.metric, []).append(
            TracePoint(reading.measured_at, reading.value, outcome, level, sd, reading.device_id)
        )
    return out, twin
