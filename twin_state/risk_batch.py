"""Risk for many evaluations at once: ``risk_many(items, settings)`` is ``[risk(t, p, n, settings) for t, p, n in
items]`` (``twin_state.risk``, which stays the reference), computed with numpy across the whole batch.

What is discrete or cheap is computed per evaluation with the scalar module's own code: NEWS2 now (``news2.score``
on each fresh vital's estimate projected to now, as ``risk.news2_now`` does through ``view.vital_views``, without
building the views), the manual inputs, the personalised band tables (``risk._personalise``, memoised) and the
unconfirmed readings. What costs is gathered into arrays, one row per (evaluation, scored vital), and done for every
row and time point at once: the Kalman projection to now (fast and slow filter), the damped forecast moments, the
normal mass of each subscore (``erf`` below), the convolution of the parameters' subscore distributions into the
8-bin aggregate, the maxima over time points, and the drift score.

Every ``Score``, enum and int is the scalar one exactly; the probabilities and the drift differ from it by rounding
only (``erf`` agrees with ``math.erf`` to 1 ulp, and some sums are added in another order): well under 1e-15
(tests/unit/twin_state/test_risk_batch.py holds every field to 1e-12).

Pure: numpy, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

from twin_state.catalogue import (
    BASELINE_MATURE_MIN,
    CATALOGUE,
    FORECAST_DIFFUSION,
    SLOW,
    TREND_PERSISTENCE_MIN,
)
from twin_state.forecast import _persisted
from twin_state.news2 import (
    Assumed,
    Inputs,
    Param,
    RiskBand,
    Score,
    acvpu_score,
    oxygen_score,
    pulse_score,
    rr_score,
    sbp_score,
    score,
    spo2_scale1_score,
    spo2_scale2_score,
    temp_score,
    worse_neighbour,
)
from twin_state.profile import Profile
from twin_state.risk import (
    _CHART,
    _FORECAST_BANDS,
    _FORECAST_SPO2_SCALE1,
    _FORECAST_SPO2_SCALE2_AIR,
    _FORECAST_SPO2_SCALE2_O2,
    _HALF_NORMAL_MEAN,
    _HALF_NORMAL_SD,
    DRIFT_MIN_VITALS,
    DRIFT_SIGN,
    FILTERED_PARAMS,
    ZERO_BANDS,
    Interval,
    Risk,
    RiskSettings,
    _manual_inputs,
    _personalise,
    activity_now,
    risk,
    unconfirmed_scores,
)
from twin_state.twin import MS_PER_MIN, Twin
from twin_state.view import DEFAULT_STALE_AFTER_MS

Floats = npt.NDArray[np.float64]
Item = tuple[Twin, Profile | None, int]

# --- a vectorised erf ------------------------------------------------------------------------------------------------
# Piecewise Taylor polynomials of degree _ERF_DEGREE about the centres c = (j + 1/2) w of [0, 6), w = 1/16, so
# |x - c| <= 1/32: erf(c) from math.erf, and the derivatives in closed form, erf^(n)(c) = 2/sqrt(pi) (-1)^(n-1)
# H_(n-1)(c) exp(-c^2) (physicists' Hermite polynomials, computed exactly in rationals at import). The neglected
# term is below 1e-18; against math.erf the largest difference is 1 ulp (1.1e-16, on 500,000 points in [-7, 7]:
# test_risk_batch). |x| >= 6 gives +-1, as math.erf does (its value there rounds to 1).
_ERF_STEP = 1.0 / 16.0
_ERF_DEGREE = 9
_ERF_LIMIT = 6.0


def _erf_coefficients() -> list[Floats]:
    pieces = int(_ERF_LIMIT / _ERF_STEP)
    table = np.empty((_ERF_DEGREE + 1, pieces))
    two_over_root_pi = 2.0 / math.sqrt(math.pi)
    for j in range(pieces):
        c = (j + 0.5) * _ERF_STEP
        exact = Fraction(c)
        hermite = [Fraction(1), 2 * exact]
        for m in range(1, _ERF_DEGREE):
            hermite.append(2 * exact * hermite[m] - 2 * m * hermite[m - 1])
        g = two_over_root_pi * math.exp(-c * c)
        table[0, j] = math.erf(c)
        for n in range(1, _ERF_DEGREE + 1):
            table[n, j] = g * float((-1) ** (n - 1) * hermite[n - 1] / math.factorial(n))
    return [np.ascontiguousarray(row) for row in table]


_ERF_COEFFICIENTS = _erf_coefficients()


def erf(x: Floats) -> Floats:
    """``math.erf`` of every element of a float array, to 1 ulp. NaN gives NaN."""
    ax = np.abs(x)
    piece = (np.fmin(ax, _ERF_LIMIT - _ERF_STEP / 2.0) * (1.0 / _ERF_STEP)).astype(np.intp)  # fmin: NaN -> limit
    h = piece + 0.5
    h *= -_ERF_STEP
    h += ax
    c = _ERF_COEFFICIENTS
    p: Floats = c[_ERF_DEGREE].take(piece)
    for n in range(_ERF_DEGREE - 1, -1, -1):
        p *= h
        p += c[n].take(piece)
    p[ax >= _ERF_LIMIT] = 1.0
    p[np.isnan(ax)] = np.nan
    return np.copysign(p, x, out=p)


# --- the vitals, in FILTERED_PARAMS' order (the scalar code's order for tables, p_param_3 and drift) -----------------
_PARAMS: tuple[Param, ...] = tuple(FILTERED_PARAMS)
_METRICS = tuple(FILTERED_PARAMS.values())
_RR, _SPO2, _SBP, _PULSE, _TEMP = (_PARAMS.index(p) for p in (Param.RR, Param.SPO2, Param.SBP, Param.PULSE,
                                                              Param.TEMP))
_POSSIBLE = tuple(CATALOGUE[m].possible for m in _METRICS)
_Q = np.array([CATALOGUE[m].process_noise for m in _METRICS])
_Q_LEVEL = np.array([CATALOGUE[m].level_noise for m in _METRICS])
_Q_SLOW = np.array([SLOW[m].q if m in SLOW else 0.0 for m in _METRICS])
_DIFFUSION = np.array([FORECAST_DIFFUSION[m] for m in _METRICS])
_DRIFT_SIGN = np.array([DRIFT_SIGN[p] for p in _PARAMS])
_SPO2_SCALE2_ZERO = (88.0, 92.0)  # risk.risk's zero band for SpO2 on scale 2 on oxygen (or unknown)
_ZERO_LO = np.array([ZERO_BANDS[p][0] if p in ZERO_BANDS else _SPO2_SCALE2_ZERO[0] for p in _PARAMS])
_ZERO_HI = np.array([ZERO_BANDS[p][1] if p in ZERO_BANDS else _SPO2_SCALE2_ZERO[1] for p in _PARAMS])
_TWO_SIDED = tuple(p in ZERO_BANDS for p in _PARAMS)
_NORMAL_FROM = {p: next(lo for lo, _, s in _FORECAST_BANDS[p] if s == 0) for p in _CHART}
"""Where each charted vital's zero band starts: which side of normal a baseline lies on (``risk._personalise``)."""
_BASES: tuple[list[Interval], ...] = (_FORECAST_SPO2_SCALE1, _FORECAST_SPO2_SCALE2_AIR, _FORECAST_SPO2_SCALE2_O2)

TableKey = tuple[int, int, tuple[float, float] | None, int, bool]
"""(vital, SpO2 table 0-2, target, points the mature baseline scores, baseline below normal): all that
``risk._personalise`` reads of its inputs, so equal keys give equal tables."""


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A band table (contiguous intervals from -inf to +inf) as its finite edges: the CDF at edge e adds to the
    subscore of the interval below it and takes from that of the one above (``weights[e]``, by subscore); the last
    interval adds 1 to its subscore (``last``)."""

    edges: Floats
    weights: Floats
    last: Floats


def _compile(table: list[Interval]) -> _Compiled:
    subs = [s for _, _, s in table]
    weights = np.zeros((len(table) - 1, 4))
    for e in range(len(table) - 1):
        weights[e, subs[e]] += 1.0
        weights[e, subs[e + 1]] -= 1.0
    last = np.zeros(4)
    last[subs[-1]] = 1.0
    return _Compiled(np.array([hi for _, hi, _ in table[:-1]]), weights, last)


_TABLES: dict[TableKey, _Compiled] = {}
_TABLES_MAX = 4096
_SQRT2 = math.sqrt(2.0)
_TINY_SD = 1e-12  # risk._distribution's: a distribution narrower than this is a point
_DEFAULT_SETTINGS = RiskSettings()
SCALAR_BELOW = 3
"""Batches smaller than this go through ``risk.risk`` one by one: numpy's fixed cost per call (some 150 array
operations) is more than the scalar code's per evaluation below it."""


def _table(key: TableKey, baseline: float | None) -> _Compiled:
    found = _TABLES.get(key)
    if found is None:
        slot, base, target, _, _ = key
        param = _PARAMS[slot]
        intervals = list(_BASES[base] if slot == _SPO2 else _FORECAST_BANDS[param])
        if len(_TABLES) >= _TABLES_MAX:
            _TABLES.clear()
        found = _TABLES[key] = _compile(_personalise(param, intervals, target, baseline))
    return found


# --- NEWS2 now, memoised ----------------------------------------------------------------------------------------------
# news2.score(..., estimate=True) scores each estimate x by worse_neighbour, which reads x only through
# floor(x u + 1e-9) and ceil(x u - 1e-9) (u chart values per unit): each vital's subscore is memoised on that pair,
# and the whole Score on the subscores and the other inputs, which is everything score() reads. A miss calls the
# scalar functions on the real values. Each result is a copy, as a fresh call would return.
_CHARTS: dict[tuple[int, int], tuple[Callable[[float], int], float]] = {
    (_RR, 0): (rr_score, 1.0), (_SBP, 0): (sbp_score, 1.0), (_PULSE, 0): (pulse_score, 1.0),
    (_TEMP, 0): (temp_score, 10.0), (_SPO2, 0): (spo2_scale1_score, 1.0),
    (_SPO2, 1): (lambda v: spo2_scale2_score(v, False), 1.0), (_SPO2, 2): (lambda v: spo2_scale2_score(v, True), 1.0),
}
"""(vital, chart variant) -> the chart and its values per unit, as news2.score picks them (SpO2: scale 1; scale 2 on
air; scale 2 on oxygen or oxygen unknown)."""
_SUBSCORES: dict[tuple[int, int, int, int], int] = {}
_SCORES: dict[tuple[object, ...], Score] = {}
_MEMO_MAX = 1 << 16


def _news2_now(estimates: list[float | None], on_oxygen: bool | None, acvpu: str | None, scale: int,
               assume: tuple[Assumed, ...], single_three: RiskBand) -> Score:
    """``news2.score(Inputs(...), single_three, estimate=True, assume=assume)`` on the fresh vitals' estimates."""
    subs: list[int | None] = [None] * 5
    for slot, x in enumerate(estimates):
        if x is None:
            continue
        variant = 0 if slot != _SPO2 or scale == 1 else 1 if on_oxygen is False else 2
        chart, per_unit = _CHARTS[(slot, variant)]
        key = (slot, variant, math.floor(x * per_unit + 1e-9), math.ceil(x * per_unit - 1e-9))
        sub = _SUBSCORES.get(key)
        if sub is None:
            if len(_SUBSCORES) >= _MEMO_MAX:
                _SUBSCORES.clear()
            sub = _SUBSCORES[key] = worse_neighbour(chart, x, per_unit)
        subs[slot] = sub
    whole_key = (*subs, on_oxygen, acvpu, scale, assume, single_three)
    found = _SCORES.get(whole_key)
    if found is None:
        if len(_SCORES) >= _MEMO_MAX:
            _SCORES.clear()
        found = _SCORES[whole_key] = score(
            Inputs(rr=estimates[_RR], spo2=estimates[_SPO2], on_oxygen=on_oxygen, sbp=estimates[_SBP],
                   pulse=estimates[_PULSE], temp=estimates[_TEMP], acvpu=acvpu, spo2_scale=scale),
            single_three, estimate=True, assume=assume)
    return Score(found.total, dict(found.subscores), found.red_flag, found.risk, found.missing, found.assumed)


def risk_many(items: Sequence[Item], settings: RiskSettings = _DEFAULT_SETTINGS) -> list[Risk]:
    """``[risk(twin, profile, now_ms, settings) for twin, profile, now_ms in items]``, vectorised across them."""
    n = len(items)
    if n < SCALAR_BELOW:
        return [risk(twin, profile, now_ms, settings) for twin, profile, now_ms in items]
    limits = dict(settings.stale_after_ms) or DEFAULT_STALE_AFTER_MS  # as news2_now hands them to vital_views
    stale_after = tuple(limits.get(m, 10 * 60_000) for m in _METRICS)
    single_three = settings.single_three

    scores: list[Score] = []
    fixed: list[int] = []
    spans: list[int] = [0]  # rows of evaluation i are spans[i]:spans[i + 1]
    values: list[float] = []  # per row: since, the filter and the slow filter (see the reshape below)
    slots: list[int] = []
    owner: list[int] = []
    table_of: list[int] = []
    two_sided: list[bool] = []
    tables: list[_Compiled] = []
    table_ids: dict[TableKey, int] = {}
    for i, (twin, profile, now_ms) in enumerate(items):
        manual = _manual_inputs(twin, now_ms, settings)
        scale2 = profile is not None and profile.spo2_scale2
        targets = profile.targets if profile is not None else None
        vitals = twin.vitals
        estimates: list[float | None] = [None] * 5
        since: list[float] = [0.0] * 5
        for slot, metric in enumerate(_METRICS):
            v = vitals.get(metric)
            if v is None:
                continue
            age = max(now_ms - v.updated_at, 0)
            if age > stale_after[slot]:
                continue  # stale: missing, as vital_views and news2_now have it
            dt = since[slot] = age / MS_PER_MIN
            f = v.filter
            level = f.level + dt * f.trend if dt != 0.0 else f.level  # kalman.predict's level
            lo, hi = _POSSIBLE[slot]
            estimates[slot] = min(max(level, lo), hi)
        current = _news2_now(estimates, manual.on_oxygen, manual.acvpu, 2 if scale2 else 1, manual.assume,
                             single_three)
        scores.append(current)
        fixed.append((acvpu_score(manual.acvpu) if manual.acvpu is not None else 0)
                     + oxygen_score(manual.on_oxygen is True))
        spo2_base = 0 if not scale2 else 1 if manual.on_oxygen is False else 2
        spo2_two_sided = scale2 and manual.on_oxygen is not False
        for slot, metric in enumerate(_METRICS):
            if estimates[slot] is None or current.subscores.get(_PARAMS[slot]) is None:
                continue
            v = vitals[metric]
            param = _PARAMS[slot]
            baseline: float | None = None
            usual = 0
            below = False
            if v.baseline_minutes >= BASELINE_MATURE_MIN and param in _CHART:
                usual = _CHART[param](v.baseline)
                if usual > 0:
                    baseline = v.baseline
                    below = baseline < _NORMAL_FROM[param]
            target = targets.get(metric) if targets is not None else None
            key: TableKey = (slot, spo2_base if slot == _SPO2 else 0, target, usual, below)
            tid = table_ids.get(key)
            if tid is None:
                tid = table_ids[key] = len(tables)
                tables.append(_table(key, baseline))
            f = v.filter
            s = v.slow
            if s is None:
                values.extend((since[slot], f.level, f.trend, f.p00, f.p01, f.p11, 0.0, 0.0, 0.0, 0.0))
            else:
                values.extend((since[slot], f.level, f.trend, f.p00, f.p01, f.p11, 1.0, s.level, s.trend, s.p11))
            slots.append(slot)
            owner.append(i)
            table_of.append(tid)
            two_sided.append(_TWO_SIDED[slot] or (slot == _SPO2 and spo2_two_sided))
        spans.append(len(slots))

    times = sorted({x for h in settings.horizons_min for x in (h / 3.0, 2.0 * h / 3.0, h)})
    nt = len(times)
    rows = len(slots)
    # Per row: P(the vital scores 0..3) at each time point; the highest P(3); the drift term.
    dists: Floats = np.zeros((rows, nt, 4))
    p3_rows: list[float] = []
    drift_sum: list[float] = [0.0] * n
    drift_count: list[int] = [0] * n
    if rows:
        dists, p3, term, counted = _rows(values, slots, table_of, two_sided, tables, times, settings)
        p3_rows = p3.tolist()
        who = np.asarray(owner)
        drift_count = np.bincount(who[counted], minlength=n).tolist()
        drift_sum = np.bincount(who[counted], weights=term[counted], minlength=n).tolist()

    reach5, reach7 = _aggregate(dists, np.asarray(slots, dtype=np.intp), np.asarray(owner, dtype=np.intp),
                                np.asarray(fixed, dtype=np.intp), n, times, settings)
    out: list[Risk] = []
    horizons = settings.horizons_min
    for i, (twin, profile, now_ms) in enumerate(items):
        current = scores[i]
        p_reach: dict[tuple[int, float], float] = {}
        r5, r7 = reach5[i], reach7[i]
        for k, horizon in enumerate(horizons):
            p_reach[(5, horizon)] = 1.0 if current.total >= 5 else r5[k]
            p_reach[(7, horizon)] = 1.0 if current.total >= 7 else r7[k]
        first, last = spans[i], spans[i + 1]
        p_param_3 = {_PARAMS[slots[r]]: p3_rows[r] for r in range(first, last)}
        count = drift_count[i]
        drift = drift_sum[i] / math.sqrt(count) if count >= DRIFT_MIN_VITALS else None
        out.append(Risk(current, p_reach, p_param_3, drift, unconfirmed_scores(twin, profile, now_ms, settings),
                        activity_now(twin, now_ms, settings)))
    return out


def _rows(values: list[float], slots: list[int], table_of: list[int], two_sided: list[bool],
          tables: list[_Compiled], times: list[float], settings: RiskSettings,
          ) -> tuple[Floats, Floats, Floats, npt.NDArray[np.bool_]]:
    """For every row: P(subscore 0..3) at each time point (rows x times x 4), the largest P(3), the drift term and
    whether the row counts towards the drift score."""
    v = np.fromiter(values, np.float64, len(values)).reshape(-1, 10)
    since, level0, trend, p00_0, p01_0, p11_0, has_slow_f, s_level0, s_trend, s_p11_0 = v.T
    slot = np.asarray(slots, dtype=np.intp)
    has_slow = has_slow_f != 0.0
    rows = len(slots)

    # kalman.predict to now (the same operations, in the same order, element by element); dt 0 leaves it as it is.
    moved = since != 0.0
    q, q_level = _Q[slot], _Q_LEVEL[slot]
    dt2 = since * since
    level = np.where(moved, level0 + since * trend, level0)
    p00 = np.where(moved, p00_0 + since * (2.0 * p01_0 + since * p11_0) + q * dt2 * since / 3.0 + q_level * since,
                   p00_0)
    p01 = np.where(moved, p01_0 + since * p11_0 + q * dt2 / 2.0, p01_0)
    p11 = np.where(moved, p11_0 + q * since, p11_0)
    s_level = np.where(moved, s_level0 + since * s_trend, s_level0)  # forecast.slow_now
    s_p11 = np.where(moved, s_p11_0 + _Q_SLOW[slot] * since, s_p11_0)

    # forecast.damped_moments at every time point (rows x times).
    t = np.asarray(times)
    phi = np.array([_persisted(x, TREND_PERSISTENCE_MIN) for x in times])
    mean = level[:, None] + phi[None, :] * trend[:, None]
    var = (p00[:, None] + (2.0 * phi)[None, :] * p01[:, None] + (phi * phi)[None, :] * p11[:, None]
           + _DIFFUSION[slot][:, None] * t[None, :])
    persistence = settings.slow_persistence_min
    if persistence > TREND_PERSISTENCE_MIN:
        extra = np.array([_persisted(x, persistence) for x in times]) - phi
        mean = np.where(has_slow[:, None], mean + extra[None, :] * s_trend[:, None], mean)
        var = np.where(has_slow[:, None], var + (extra * extra)[None, :] * s_p11[:, None], var)
    sd = np.sqrt(np.maximum(var, 0.0))

    # risk._distribution. Each row's table as its finite edges, padded to one width with edges at +inf (CDF 1,
    # weight 0): the normal CDF at each edge (rows x times x edges); a subscore's mass is the sum over its intervals of
    # CDF(to) - CDF(from), so each edge adds its CDF to the subscore of the interval below it and takes it from the
    # one above (``_Compiled.weights``), and the last interval, up to +inf, adds 1.
    width = max(len(c.edges) for c in tables)
    edge_tab = np.full((len(tables), width), math.inf)
    weight_tab = np.zeros((len(tables), width, 4))
    for k, c in enumerate(tables):
        edge_tab[k, : len(c.edges)] = c.edges
        weight_tab[k, : len(c.edges)] = c.weights
    last = np.stack([c.last for c in tables])
    tid = np.asarray(table_of, dtype=np.intp)
    hi = edge_tab[tid][:, None, :]
    m = mean[:, :, None]
    point = sd <= _TINY_SD
    scale = 1.0 / (np.where(point, 1.0, sd) * _SQRT2)
    x = (hi - m) * scale[:, :, None]
    cdf = np.where(x > 0.0, 1.0, 0.0)  # |x| >= 6 and +inf: erf is +-1
    near = np.abs(x) < _ERF_LIMIT
    if point.any():
        # A point mass: lo <= mean < hi for the one interval holding it, which the same sums give from CDF = mean < hi.
        at_point = np.broadcast_to(point[:, :, None], x.shape)
        near &= ~at_point
        cdf = np.where(at_point, (m < hi).astype(np.float64), cdf)
    cdf[near] = 0.5 * (1.0 + erf(x[near]))
    dists: Floats = np.matmul(cdf, weight_tab[tid]) + last[tid][:, None, :]
    p3: Floats = np.maximum(dists[:, :, 3].max(axis=1), 0.0) if len(times) else np.zeros(rows)

    # risk.drift_term, for the rows whose slow filter has a variance.
    counted = has_slow & (s_p11 > 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = s_trend / np.sqrt(np.where(counted, s_p11, 1.0))
    two = np.asarray(two_sided)
    inside_band = (np.abs(z) - _HALF_NORMAL_MEAN) / _HALF_NORMAL_SD
    term = np.where(two, np.where(s_level < _ZERO_LO[slot], -z, np.where(s_level >= _ZERO_HI[slot], z, inside_band)),
                    _DRIFT_SIGN[slot] * z)
    return dists, p3, term, counted


def _aggregate(dists: Floats, slot: npt.NDArray[np.intp], owner: npt.NDArray[np.intp], fixed: npt.NDArray[np.intp],
               n: int, times: list[float], settings: RiskSettings) -> tuple[list[list[float]], list[list[float]]]:
    """The aggregate's distribution at each time point, from the fixed (manual) part and each vital's subscore
    distribution in turn (everything from 7 up in bin 7); P(>= 5) and P(>= 7) within each horizon."""
    nt = len(times)
    # Bins first, so that each bin (and each subscore below) is one contiguous evaluations x times array.
    padded: Floats = np.zeros((11, n, nt))  # bins -3..7: the aggregate in [3:], zeros below it
    padded[3 + np.minimum(fixed, 7), np.arange(n), :] = 1.0
    if len(slot):
        per: Floats = np.zeros((4, len(_PARAMS), n, nt))
        per[0] = 1.0  # a vital not scored: certainly 0, which leaves the aggregate as it is
        per[:, slot, owner] = dists.transpose(2, 0, 1)
        nxt: Floats = np.empty((8, n, nt))
        for k in sorted(set(slot.tolist())):
            d0, d1, d2, d3 = per[:, k]
            a = padded
            # Bin j < 7 takes bin j - 3 by 3, j - 2 by 2, j - 1 by 1 and j by 0 (risk.risk adds them in this order).
            nxt[:7] = a[0:7] * d3 + a[1:8] * d2 + a[2:9] * d1 + a[3:10] * d0
            t2 = d2 + d3
            t1 = d1 + t2
            nxt[7] = a[7] * d3 + a[8] * t2 + a[9] * t1 + a[10] * (d0 + t1)
            # risk.risk skips a vital that certainly scores 0.
            padded[3:] = np.where(d0 == 1.0, padded[3:], nxt)
    at7 = padded[10]
    at5 = padded[8] + padded[9] + at7
    t = np.asarray(times)
    reach5: list[Any] = []
    reach7: list[Any] = []
    for horizon in settings.horizons_min:
        within = t <= horizon
        reach5.append(np.minimum(at5[:, within].max(axis=1), 1.0))
        reach7.append(np.minimum(at7[:, within].max(axis=1), 1.0))
    if not reach5:
        return [[] for _ in range(n)], [[] for _ in range(n)]
    return np.stack(reach5, axis=1).tolist(), np.stack(reach7, axis=1).tolist()
