"""A twin's risk: NEWS2 now, and the probability of reaching NEWS2 5 and 7 within a horizon.

NEWS2 now scores each vital's filtered estimate projected to ``now`` (a stale vital is missing, not
guessed) by the worse neighbouring chart value (``news2.worse_neighbour``), and the nurse's latest entries:
an "A" within ``acvpu_max_age_min``, C/V/P/U until replaced, oxygen within ``manual_max_age_min``. Consciousness
and oxygen nobody ever recorded are assumed Alert and air, and listed in ``Score.assumed`` (docs/news2.md). It
is never personalised: a high NEWS2 is reported as the chart says.

Predicted risk uses each vital's forecast distribution (normal, from the Kalman filter, damped trend, and the
slow trend when ``RiskSettings.slow_persistence_min`` asks for it: ``forecast.damped_moments``) at a third,
two thirds and all of the horizon. For each parameter the probability of each subscore is the
normal mass over the subscore's interval of real values (the readings to come charted by the chart's rounding, half
up; scale 2 with oxygen unknown uses the on-oxygen table); parameters are
taken as independent, so the distribution of the aggregate is the convolution of theirs. The probability of
reaching a threshold within the horizon is the largest of the three (a lower bound for "at any time within it").

Joint drift (``Risk.drift``): each fresh scored vital's slow trend (``VitalState.slow``) in units of its own
standard error, signed so that movement toward a scoring side of the vital's NEWS2 band counts as positive
(``drift_term``: below a two-sided zero band falling, above it rising, inside it either way; saturation on scale
1 only falling), summed and divided by the square root
of their number: a standard normal score when nothing drifts, large when several vitals drift the way a
deteriorating patient does at once. None with fewer than ``DRIFT_MIN_VITALS`` vitals. It needs no threshold to be
near: it is what lets an alert come before the levels have moved far enough to score.

Personalisation, for predicted risk only:

* a clinician-set target range (e.g. SpO2 88-92 % in COPD) scores 0 inside it;
* a vital whose mature personal baseline itself scores on the chart (an athlete's pulse of 48 scores 1) has
  that many points taken off readings on the same side of normal: what is usual for this patient is not
  deterioration. Movement away from the baseline still scores.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from twin_state import kalman
from twin_state.catalogue import (
    ACVPU,
    BASELINE_MATURE_MIN,
    CATALOGUE,
    FORECAST_DIFFUSION,
    SLOW_PERSISTENCE_MIN,
    Metric,
)
from twin_state.forecast import damped_moments, slow_now
from twin_state.news2 import (
    AIR,
    ALERT,
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
)
from twin_state.profile import Profile
from twin_state.twin import MS_PER_MIN, Twin
from twin_state.view import DEFAULT_STALE_AFTER_MS, vital_views

FILTERED_PARAMS: dict[Param, Metric] = {
    Param.RR: Metric.RESP_RATE,
    Param.SPO2: Metric.SPO2,
    Param.SBP: Metric.BP_SYSTOLIC,
    Param.PULSE: Metric.HEART_RATE,
    Param.TEMP: Metric.TEMPERATURE,
}

Interval = tuple[float, float, int]
"""(from, to, subscore) over real values; ``from`` inclusive, ``to`` exclusive."""

_INF = math.inf
# The chart's bands over real values, as news2_now scores a continuous estimate: between two chart values the
# worse one counts (``news2.worse_neighbour``), so each edge sits at the chart value that starts the worse band:
# systolic x < 91 scores 3 (90.6 lies between 90 and 91), pulse x > 90 scores 1 (90.2 lies between 90 and 91).
_BANDS: dict[Param, list[Interval]] = {
    Param.RR: [(-_INF, 9.0, 3), (9.0, 12.0, 1), (12.0, 20.0, 0), (20.0, 24.0, 2), (24.0, _INF, 3)],
    Param.SBP: [(-_INF, 91.0, 3), (91.0, 101.0, 2), (101.0, 111.0, 1), (111.0, 219.0, 0), (219.0, _INF, 3)],
    Param.PULSE: [(-_INF, 41.0, 3), (41.0, 51.0, 1), (51.0, 90.0, 0), (90.0, 110.0, 1), (110.0, 130.0, 2),
                  (130.0, _INF, 3)],
    Param.TEMP: [(-_INF, 35.1, 3), (35.1, 36.1, 1), (36.1, 38.0, 0), (38.0, 39.0, 1), (39.0, _INF, 2)],
}
_SPO2_SCALE1 = [(-_INF, 92.0, 3), (92.0, 94.0, 2), (94.0, 96.0, 1), (96.0, _INF, 0)]
_SPO2_SCALE2_AIR = [(-_INF, 84.0, 3), (84.0, 86.0, 2), (86.0, 88.0, 1), (88.0, _INF, 0)]
_SPO2_SCALE2_O2 = [(-_INF, 84.0, 3), (84.0, 86.0, 2), (86.0, 88.0, 1), (88.0, 92.0, 0), (92.0, 94.0, 1),
                   (94.0, 96.0, 2), (96.0, _INF, 3)]
# Predicted risk is about readings still to come, which a nurse (or a device's display) charts by the chart's own
# rounding, half up: its tables keep those edges (whole(x) <= 8 <=> x < 8.5; tenths(t) <= 350 <=> t < 35.05). NEWS2
# now rounds today's estimate toward the worse band (the tables above); the two agree wherever an estimate is a chart
# value, and "reached now" counts as reached in every horizon.
_FORECAST_BANDS: dict[Param, list[Interval]] = {
    Param.RR: [(-_INF, 8.5, 3), (8.5, 11.5, 1), (11.5, 20.5, 0), (20.5, 24.5, 2), (24.5, _INF, 3)],
    Param.SBP: [(-_INF, 90.5, 3), (90.5, 100.5, 2), (100.5, 110.5, 1), (110.5, 219.5, 0), (219.5, _INF, 3)],
    Param.PULSE: [(-_INF, 40.5, 3), (40.5, 50.5, 1), (50.5, 90.5, 0), (90.5, 110.5, 1), (110.5, 130.5, 2),
                  (130.5, _INF, 3)],
    Param.TEMP: [(-_INF, 35.05, 3), (35.05, 36.05, 1), (36.05, 38.05, 0), (38.05, 39.05, 1), (39.05, _INF, 2)],
}
_FORECAST_SPO2_SCALE1 = [(-_INF, 91.5, 3), (91.5, 93.5, 2), (93.5, 95.5, 1), (95.5, _INF, 0)]
_FORECAST_SPO2_SCALE2_AIR = [(-_INF, 83.5, 3), (83.5, 85.5, 2), (85.5, 87.5, 1), (87.5, _INF, 0)]
_FORECAST_SPO2_SCALE2_O2 = [(-_INF, 83.5, 3), (83.5, 85.5, 2), (85.5, 87.5, 1), (87.5, 92.5, 0), (92.5, 94.5, 1),
                            (94.5, 96.5, 2), (96.5, _INF, 3)]
_CHART = {Param.RR: rr_score, Param.SBP: sbp_score, Param.PULSE: pulse_score, Param.TEMP: temp_score}
DRIFT_SIGN: dict[Param, float] = {Param.PULSE: 1.0, Param.RR: 1.0, Param.TEMP: 1.0, Param.SPO2: -1.0, Param.SBP: -1.0}
"""Direction of deterioration for a vital that NEWS2 scores on one side only, or whose zero band is not given to
``drift_score``."""
DRIFT_MIN_VITALS = 3


@dataclass(frozen=True, slots=True)
class RiskSettings:
    horizons_min: tuple[float, ...] = (30.0, 60.0)
    manual_max_age_min: float = 12 * 60.0
    """How long a nurse's oxygen entry counts for NEWS2; after it, oxygen is missing."""
    acvpu_max_age_min: float = 4 * 60.0
    """How long a nurse's "A" (alert) counts for NEWS2; after it, consciousness is missing and the score
    incomplete. 4 h is the RCP's minimum observation frequency for NEWS2 1-4: an assessment older than the next
    one is due says nothing about new confusion. C, V, P or U stands until a newer entry replaces it."""
    single_three: RiskBand = RiskBand.LOW_MEDIUM
    stale_after_ms: Mapping[Metric, int] = field(default_factory=lambda: dict(DEFAULT_STALE_AFTER_MS))
    slow_persistence_min: float = SLOW_PERSISTENCE_MIN
    """How long each vital's slow trend is expected to persist in the forecast (``forecast.damped_moments``);
    0 leaves it out."""


@dataclass(frozen=True, slots=True)
class Unconfirmed:
    value: float
    measured_at: int
    subscore: int
    gap_ms: int
    """Time from the vital's last believed reading to this one: the cadence at which it is measured, which says how
    long the next reading, the one that confirms or refutes it, may take."""


@dataclass(frozen=True, slots=True)
class Risk:
    now: Score
    p_reach: Mapping[tuple[int, float], float]
    """(threshold 5 or 7, horizon minutes) -> probability of the aggregate reaching it within the horizon."""
    p_param_3: Mapping[Param, float]
    """Probability that each filtered parameter scores 3 within the longest horizon."""
    drift: float | None = None
    """Joint drift score of the slow trends (module docstring); None with too few vitals."""
    unconfirmed: Mapping[Param, Unconfirmed] = field(default_factory=dict)
    """Readings the twin refused and no later reading has confirmed or refuted yet, scored on their own as charted:
    what a person must see and re-measure, not part of ``now``."""
    activity: float | None = None
    """The activity vital's filtered level (steps/min) at its last accepted reading, while that reading is no older
    than its ``stale_after_ms``; None when stale or never measured (``activity_now``). NEWS2 does not score it: the
    alert policy reads it as exertion (``alerts.policy.PolicySettings.exertion_hold_max_ms``)."""

    @property
    def assumed(self) -> tuple[Assumed, ...]:
        """What NEWS2 now (and so the prediction) took for granted: consciousness and oxygen nobody recorded."""
        return self.now.assumed

    def p(self, threshold: int, horizon_min: float) -> float:
        return self.p_reach[(threshold, horizon_min)]


_SQRT2 = math.sqrt(2.0)
# Bin i of the aggregate plus a subscore of 1, 2 or 3, with everything from 7 up in bin 7.
_UP1, _UP2, _UP3 = ([min(i + k, 7) for i in range(8)] for k in (1, 2, 3))


def _distribution(intervals: Sequence[Interval], mean: float, sd: float) -> list[float]:
    """Probability of subscore 0..3 under N(mean, sd^2). Intervals are contiguous from -inf to +inf, so one
    normal CDF per edge suffices."""
    p = [0.0, 0.0, 0.0, 0.0]
    below = 0.0
    if sd <= 1e-12:
        for lo, hi, s in intervals:
            if lo <= mean < hi:
                p[s] = 1.0
        return p
    scale = 1.0 / (sd * _SQRT2)
    for _, hi, s in intervals:
        upto = 1.0 if hi == _INF else 0.5 * (1.0 + math.erf((hi - mean) * scale))
        p[s] += upto - below
        below = upto
    return p


def _personalise(param: Param, intervals: list[Interval], target: tuple[float, float] | None,
                 baseline: float | None) -> list[Interval]:
    out = intervals
    if baseline is not None and param in _CHART:
        usual = _CHART[param](baseline)
        if usual > 0:
            normal = next(lo for lo, hi, s in intervals if s == 0)
            low_side = baseline < normal
            out = [(lo, hi, max(s - usual, 0) if (hi <= normal) == low_side and s > 0 else s) for lo, hi, s in out]
    if target is not None:
        t_lo, t_hi = target
        split: list[Interval] = []
        for lo, hi, s in out:
            for a, b, score_ in ((lo, min(hi, t_lo), s), (max(lo, t_lo), min(hi, t_hi), 0), (max(lo, t_hi), hi, s)):
                if a < b:
                    split.append((a, b, score_))
        out = split
    return out


def _manual(twin: Twin, metric: Metric, now_ms: int, max_age_min: float) -> float | None:
    obs = twin.observations.get(metric)
    if obs is None or now_ms - obs.measured_at > max_age_min * 60_000:
        return None
    return obs.value


@dataclass(frozen=True, slots=True)
class _Manual:
    acvpu: str | None
    on_oxygen: bool | None
    assume: tuple[Assumed, ...]


def _manual_inputs(twin: Twin, now_ms: int, settings: RiskSettings) -> _Manual:
    """Consciousness and oxygen as NEWS2 now scores them. Never recorded: assumed Alert and air (a wearable
    patient is otherwise partial for ever). Recorded and aged out: missing, except an abnormal ACVPU, which does
    not age into "alert" (only a newer entry replaces it)."""
    assume: list[Assumed] = []
    acvpu: str | None = None
    c = twin.observations.get(Metric.CONSCIOUSNESS)
    if c is None:
        assume.append(ALERT)
    else:
        code = ACVPU[int(c.value)]
        if code != "A" or now_ms - c.measured_at <= settings.acvpu_max_age_min * 60_000:
            acvpu = code
    on_oxygen: bool | None = None
    if Metric.O2_FLOW not in twin.observations:
        assume.append(AIR)
    else:
        o2 = _manual(twin, Metric.O2_FLOW, now_ms, settings.manual_max_age_min)
        on_oxygen = None if o2 is None else o2 > 0
    return _Manual(acvpu, on_oxygen, tuple(assume))


def news2_now(twin: Twin, profile: Profile | None, now_ms: int, settings: RiskSettings = RiskSettings()) -> Score:
    fresh = {v.metric: v.estimate for v in vital_views(twin, now_ms, dict(settings.stale_after_ms)) if not v.stale}
    manual = _manual_inputs(twin, now_ms, settings)
    return score(
        Inputs(
            rr=fresh.get(Metric.RESP_RATE),
            spo2=fresh.get(Metric.SPO2),
            on_oxygen=manual.on_oxygen,
            sbp=fresh.get(Metric.BP_SYSTOLIC),
            pulse=fresh.get(Metric.HEART_RATE),
            temp=fresh.get(Metric.TEMPERATURE),
            acvpu=manual.acvpu,
            spo2_scale=2 if profile is not None and profile.spo2_scale2 else 1,
        ),
        settings.single_three,
        estimate=True,
        assume=manual.assume,
    )


def risk(twin: Twin, profile: Profile | None, now_ms: int, settings: RiskSettings = RiskSettings()) -> Risk:
    current = news2_now(twin, profile, now_ms, settings)
    manual = _manual_inputs(twin, now_ms, settings)
    consciousness = [0.0] * 4
    consciousness[acvpu_score(manual.acvpu) if manual.acvpu is not None else 0] = 1.0
    oxygen = [0.0] * 3
    oxygen[oxygen_score(manual.on_oxygen is True)] = 1.0
    # Scale 2 with oxygen unknown is predicted as on oxygen, as NEWS2 now scores it (news2 module docstring).
    scale2_table = _SPO2_SCALE2_AIR if manual.on_oxygen is False else _SPO2_SCALE2_O2
    forecast_scale2 = _FORECAST_SPO2_SCALE2_AIR if manual.on_oxygen is False else _FORECAST_SPO2_SCALE2_O2

    tables: dict[Param, list[Interval]] = {}
    scale2 = profile is not None and profile.spo2_scale2
    for param, metric in FILTERED_PARAMS.items():
        vital = twin.vitals.get(metric)
        if vital is None or current.subscores.get(param) is None:
            continue  # missing now (never seen, or stale): contributes nothing, as in the partial score
        base = ((forecast_scale2 if scale2 else _FORECAST_SPO2_SCALE1) if param is Param.SPO2
                else _FORECAST_BANDS[param])
        mature = vital.baseline_minutes >= BASELINE_MATURE_MIN
        target = profile.targets.get(metric) if profile is not None else None
        tables[param] = _personalise(param, list(base), target, vital.baseline if mature else None)

    # Each vital projected to now once; its damped forecast at t is then closed-form (as forecast_vital's).
    prepared = []
    for param, table in tables.items():
        metric = FILTERED_PARAMS[param]
        vital = twin.vitals[metric]
        spec = CATALOGUE[metric]
        since = max(now_ms - vital.updated_at, 0) / MS_PER_MIN
        prepared.append((param, table, kalman.predict(vital.filter, since, spec.process_noise, spec.level_noise),
                         slow_now(metric, vital, since), FORECAST_DIFFUSION[metric]))
    fixed = consciousness.index(1.0) + oxygen.index(1.0)
    p3: dict[Param, float] = dict.fromkeys(tables, 0.0)
    at: dict[float, tuple[float, float]] = {}
    for t in sorted({x for h in settings.horizons_min for x in (h / 3.0, 2.0 * h / 3.0, h)}):
        # Distribution of the aggregate, with everything from 7 up in the last bin: only >= 5 and >= 7 matter.
        total = [0.0] * 8
        total[min(fixed, 7)] = 1.0
        for param, table, s, slow, diffusion in prepared:
            mean, var = damped_moments(s, slow, t, diffusion, settings.slow_persistence_min)
            d = _distribution(table, mean, math.sqrt(max(var, 0.0)))
            d0, d1, d2, d3 = d
            if d3 > p3[param]:
                p3[param] = d3
            if d0 == 1.0:
                continue  # certainly scores 0: the aggregate is unchanged (the common case for a stable vital)
            nxt = [0.0] * 8
            for i in range(8):
                a = total[i]
                if a:
                    nxt[i] += a * d0
                    nxt[_UP1[i]] += a * d1
                    nxt[_UP2[i]] += a * d2
                    nxt[_UP3[i]] += a * d3
            total = nxt
        at[t] = (total[5] + total[6] + total[7], total[7])

    p_reach: dict[tuple[int, float], float] = {}
    for horizon in settings.horizons_min:
        # Reaching a score within 60 minutes includes reaching it within 30: the best over every point so far.
        best5 = max(p for t, (p, _) in at.items() if t <= horizon)
        best7 = max(p for t, (_, p) in at.items() if t <= horizon)
        # The score now counts too: a NEWS2 that is 7 now has reached 7 within any horizon.
        p_reach[(5, horizon)] = 1.0 if current.total >= 5 else min(best5, 1.0)
        p_reach[(7, horizon)] = 1.0 if current.total >= 7 else min(best7, 1.0)
    zero_bands = {**ZERO_BANDS, Param.SPO2: (88.0, 92.0)} if scale2 and scale2_table is _SPO2_SCALE2_O2 else ZERO_BANDS
    return Risk(current, p_reach, p3, drift_score([(param, slow) for param, _, _, slow, _ in prepared], zero_bands),
                unconfirmed_scores(twin, profile, now_ms, settings), activity_now(twin, now_ms, settings))


def activity_now(twin: Twin, now_ms: int, settings: RiskSettings = RiskSettings()) -> float | None:
    """The activity vital's filtered level at its last accepted reading (clamped to what is possible), or None when
    that reading is older than the activity's ``stale_after_ms`` (as ``view.vital_views`` judges staleness) or there
    is none. Not projected forward: a level-and-trend filter would extrapolate the start of a walk."""
    v = twin.vitals.get(Metric.ACTIVITY)
    if v is None:
        return None
    limit = settings.stale_after_ms.get(Metric.ACTIVITY, DEFAULT_STALE_AFTER_MS[Metric.ACTIVITY])
    if max(now_ms - v.updated_at, 0) > limit:
        return None
    lo, hi = CATALOGUE[Metric.ACTIVITY].possible
    return min(max(v.filter.level, lo), hi)


def unconfirmed_scores(twin: Twin, profile: Profile | None, now_ms: int,
                       settings: RiskSettings = RiskSettings()) -> dict[Param, Unconfirmed]:
    """Each scored vital's unconfirmed reading (``VitalState.unconfirmed``) with the subscore the chart gives it, while
    it is no older than the vital's staleness limit."""
    out: dict[Param, Unconfirmed] = {}
    o2 = _manual(twin, Metric.O2_FLOW, now_ms, settings.manual_max_age_min)
    for param, metric in FILTERED_PARAMS.items():
        vital = twin.vitals.get(metric)
        if vital is None or vital.unconfirmed is None:
            continue
        if now_ms - vital.unconfirmed_at > settings.stale_after_ms.get(metric, DEFAULT_STALE_AFTER_MS[metric]):
            continue
        z = vital.unconfirmed
        if param is Param.SPO2:
            scale2 = profile is not None and profile.spo2_scale2
            # Oxygen unknown: as if on oxygen, as NEWS2 now scores scale 2 (news2 module docstring).
            sub = spo2_scale2_score(z, o2 is None or o2 > 0) if scale2 else spo2_scale1_score(z)
        else:
            sub = _CHART[param](z)
        out[param] = Unconfirmed(z, vital.unconfirmed_at, sub, vital.unconfirmed_at - vital.updated_at)
    return out


ZERO_BANDS: dict[Param, tuple[float, float]] = {
    p: next((lo, hi) for lo, hi, sc in table if sc == 0) for p, table in _BANDS.items()}
"""Each vital's zero band bounded on both sides, [from, to) over real values; SpO2 joins them on scale 2 on
oxygen (88-92)."""
_HALF_NORMAL_MEAN = math.sqrt(2.0 / math.pi)
_HALF_NORMAL_SD = math.sqrt(1.0 - 2.0 / math.pi)


def drift_term(param: Param, level: float, z: float,
               zero_bands: Mapping[Param, tuple[float, float]] = ZERO_BANDS) -> float:
    """One vital's part of the drift score: its slow trend ``z`` (in standard errors) at slow ``level``, signed
    so that movement toward a scoring side of its NEWS2 band counts positive.

    * A one-sided vital (no zero band given: SpO2 on scale 1 or on air): ``DRIFT_SIGN``, falling is worse.
    * Below a two-sided zero band, falling is worse; at or above its upper edge, rising is worse; and moving back
      toward the band counts negative.
    * Inside it, either direction heads for a scoring side: ``|z|``, standardised as a half-normal
      ((|z| - sqrt(2/pi)) / sqrt(1 - 2/pi)) so that a vital that does not drift still adds 0 on average with unit
      variance, like the signed terms, and the score keeps its meaning as a standard normal score."""
    zero = zero_bands.get(param)
    if zero is None:
        return DRIFT_SIGN[param] * z
    lo, hi = zero
    if level < lo:
        return -z
    if level >= hi:
        return z
    return (abs(z) - _HALF_NORMAL_MEAN) / _HALF_NORMAL_SD


def drift_score(slows: Sequence[tuple[Param, kalman.LevelTrend | None]],
                zero_bands: Mapping[Param, tuple[float, float]] = ZERO_BANDS) -> float | None:
    """The joint drift score of the given vitals' slow filters (see the module docstring and ``drift_term``)."""
    zs = [drift_term(param, slow.level, slow.trend / math.sqrt(slow.p11), zero_bands)
          for param, slow in slows if slow is not None and slow.p11 > 0.0]
    if len(zs) < DRIFT_MIN_VITALS:
        return None
    return sum(zs) / math.sqrt(len(zs))
