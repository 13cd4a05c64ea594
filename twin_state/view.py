"""What a person reads off a twin at a given moment: each vital's estimate now, its band, and staleness.

The stored filter state is as of the last reading; the view projects it to ``now`` so that the uncertainty
shown grows honestly while no data arrives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from twin_state import kalman
from twin_state.catalogue import CATALOGUE, Metric
from twin_state.twin import MS_PER_MIN, Twin

DEFAULT_STALE_AFTER_MS: dict[Metric, int] = {
    Metric.HEART_RATE: 5 * 60_000,
    Metric.SPO2: 5 * 60_000,
    Metric.RESP_RATE: 10 * 60_000,
    Metric.TEMPERATURE: 30 * 60_000,
    Metric.BP_SYSTOLIC: 90 * 60_000,
    Metric.BP_DIASTOLIC: 90 * 60_000,
    Metric.ACTIVITY: 10 * 60_000,
}
Z95 = 1.959963984540054


@dataclass(frozen=True, slots=True)
class VitalView:
    metric: Metric
    unit: str
    estimate: float
    sd: float
    low95: float
    high95: float
    trend_per_min: float
    last_raw: float
    age_s: float
    stale: bool
    readings: int


def vital_views(
    twin: Twin, now_ms: int, stale_after_ms: dict[Metric, int] | None = None
) -> list[VitalView]:
    limits = stale_after_ms or DEFAULT_STALE_AFTER_MS
    out = []
    for metric in Metric:
        v = twin.vitals.get(metric)
        if v is None:
            continue
        spec = CATALOGUE[metric]
        age_ms = max(now_ms - v.updated_at, 0)
        projected = kalman.predict(v.filter, age_ms / MS_PER_MIN, spec.process_noise, spec.level_noise)
        sd = math.sqrt(max(projected.p00, 0.0))
        # A level-and-trend filter can overshoot a hard physical limit (SpO2 above 100 % during a run of 100s);
        # what a person reads is clamped to what is possible.
        lo, hi = spec.possible
        level = min(max(projected.level, lo), hi)
        out.append(
            VitalView(
                metric=metric,
                unit=spec.unit,
                estimate=level,
                sd=sd,
                low95=max(level - Z95 * sd, lo),
                high95=min(level + Z95 * sd, hi),
                trend_per_min=projected.trend,
                last_raw=v.last_raw,
                age_s=age_ms / 1000.0,
                stale=age_ms > limits.get(metric, 10 * 60_000),
                readings=v.accepted,
            )
        )
    return out
