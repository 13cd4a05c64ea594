"""The recent history kept beside each twin, for charts: one point per vital per minute, raw and filtered.

Pure: which points a reading adds depends only on the twin before and after it, so a replayed batch would
add the same points (and the store only appends them together with a twin write that is newer).
"""

from __future__ import annotations

import math

from twin_state.twin import ACCEPTED, Outcome, Reading, Twin

BUCKET_MS = 60_000

HistoryPoint = tuple[int, str, float, float, float, str]
"""(measured_at, metric, raw value, estimate, estimate SD, outcome)."""


def history_point(before: Twin, after: Twin, reading: Reading, outcome: Outcome) -> HistoryPoint | None:
    """A point when ``reading`` is the first accepted one of its vital in a new minute; otherwise None."""
    if outcome not in ACCEPTED:
        return None
    vital = after.vitals.get(reading.metric)
    if vital is None:
        return None
    prior = before.vitals.get(reading.metric)
    return point_after(None if prior is None else prior.updated_at, vital.filter.level, vital.filter.p00, reading,
                       outcome)


def point_after(prior_updated_at: int | None, level: float, p00: float, reading: Reading,
                outcome: Outcome) -> HistoryPoint | None:
    """``history_point`` from the fields it reads: the vital's ``updated_at`` before the reading (None when it had
    no such vital), and its filter's level and variance after it, for an accepted ``reading``."""
    if prior_updated_at is not None and prior_updated_at // BUCKET_MS == reading.measured_at // BUCKET_MS:
        return None
    sd = math.sqrt(max(p00, 0.0))
    return (reading.measured_at, reading.metric.value, reading.value, level, sd, outcome.value)
