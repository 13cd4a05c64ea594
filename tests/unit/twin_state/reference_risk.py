"""The straightforward first implementation of predicted risk, kept as the reference that the optimised one in
``twin_state.risk`` must agree with (filterpy's habit: one implementation checked against another).

It shares the band tables and personalisation, and recomputes everything else the slow, obvious way:
``forecast_vital`` per time point, one normal-CDF pair per interval, a full convolution of every parameter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from twin_state.catalogue import ACVPU, BASELINE_MATURE_MIN, Metric
from twin_state.forecast import Scenario, forecast_vital
from twin_state.news2 import Param, acvpu_score, oxygen_score
from twin_state.profile import Profile
from twin_state.risk import (
    _FORECAST_BANDS,
    _FORECAST_SPO2_SCALE1,
    _FORECAST_SPO2_SCALE2_AIR,
    _FORECAST_SPO2_SCALE2_O2,
    FILTERED_PARAMS,
    Interval,
    RiskSettings,
    _manual,
    _personalise,
    news2_now,
)
from twin_state.twin import Twin


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _distribution(intervals: Sequence[Interval], mean: float, sd: float) -> list[float]:
    p = [0.0, 0.0, 0.0, 0.0]
    for lo, hi, s in intervals:
        a = 0.0 if lo == -math.inf else _phi((lo - mean) / sd)
        b = 1.0 if hi == math.inf else _phi((hi - mean) / sd)
        p[s] += max(b - a, 0.0)
    return p


def _convolve(dists: Sequence[Sequence[float]]) -> list[float]:
    total = [1.0]
    for d in dists:
        nxt = [0.0] * (len(total) + len(d) - 1)
        for i, a in enumerate(total):
            for j, b in enumerate(d):
                nxt[i + j] += a * b
        total = nxt
    return total


def reference_risk(
    twin: Twin, profile: Profile | None, now_ms: int, settings: RiskSettings
) -> tuple[dict[tuple[int, float], float], dict[Param, float]]:
    current = news2_now(twin, profile, now_ms, settings)
    # ACVPU: an "A" counts for acvpu_max_age_min; C, V, P or U until replaced; none recorded scores 0.
    c = twin.observations.get(Metric.CONSCIOUSNESS)
    fresh_a = c is not None and now_ms - c.measured_at <= settings.acvpu_max_age_min * 60_000
    acvpu = None if c is None or (ACVPU[int(c.value)] == "A" and not fresh_a) else ACVPU[int(c.value)]
    o2 = _manual(twin, Metric.O2_FLOW, now_ms, settings.manual_max_age_min)
    on_oxygen = o2 is not None and o2 > 0
    oxygen_known = o2 is not None
    consciousness = [0.0] * 4
    consciousness[acvpu_score(acvpu) if acvpu is not None else 0] = 1.0
    oxygen = [0.0] * 3
    oxygen[oxygen_score(on_oxygen)] = 1.0
    scale2 = profile is not None and profile.spo2_scale2
    tables = {}
    for param, metric in FILTERED_PARAMS.items():
        vital = twin.vitals.get(metric)
        if vital is None or current.subscores.get(param) is None:
            continue
        if param is Param.SPO2:
            # Scale 2 with oxygen unknown is predicted as on oxygen.
            base = ((_FORECAST_SPO2_SCALE2_O2 if on_oxygen or not oxygen_known else _FORECAST_SPO2_SCALE2_AIR)
                    if scale2 else _FORECAST_SPO2_SCALE1)
        else:
            base = _FORECAST_BANDS[param]
        mature = vital.baseline_minutes >= BASELINE_MATURE_MIN
        target = profile.targets.get(metric) if profile is not None else None
        tables[param] = _personalise(param, list(base), target, vital.baseline if mature else None)
    p_reach: dict[tuple[int, float], float] = {}
    p3 = dict.fromkeys(tables, 0.0)
    best5 = best7 = 0.0
    for horizon in sorted(settings.horizons_min):
        for t in (horizon / 3.0, 2.0 * horizon / 3.0, horizon):
            dists = [consciousness, oxygen]
            for param, table in tables.items():
                metric = FILTERED_PARAMS[param]
                f = forecast_vital(metric, twin.vitals[metric], now_ms, t, Scenario.DAMPED)
                d = _distribution(table, f.mean, f.sd)
                dists.append(d)
                p3[param] = max(p3[param], d[3])
            total = _convolve(dists)
            best5 = max(best5, sum(total[5:]))
            best7 = max(best7, sum(total[7:]))
        p_reach[(5, horizon)] = 1.0 if current.total >= 5 else min(best5, 1.0)
        p_reach[(7, horizon)] = 1.0 if current.total >= 7 else min(best7, 1.0)
    return p_reach, p3
