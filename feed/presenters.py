"""Pure: what the feed shows of a twin, its profile and its alert state at a moment. No I/O here.

Built from the same core functions as ``twinmon twin show`` / ``forecast`` (``vital_views``, ``forecast_vital``,
``risk``), so the page and the CLI read the same numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from alerts.calibration import Calibration
from alerts.policy import OpenAlert, PatientAlerts
from feed import models
from twin_state.catalogue import BASELINE_MATURE_MIN, CATALOGUE, Metric
from twin_state.forecast import Scenario, forecast_vital
from twin_state.history import HistoryPoint
from twin_state.news2 import (
    Score,
    pulse_score,
    rr_score,
    sbp_score,
    spo2_scale1_score,
    spo2_scale2_score,
    temp_score,
)
from twin_state.profile import Profile
from twin_state.risk import FILTERED_PARAMS, RiskSettings, risk, unconfirmed_scores
from twin_state.twin import Twin
from twin_state.view import vital_views

FORECAST_MINUTES = (0.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0)
RISK_HORIZON_MIN = 60.0
SPARKLINE_BUCKETS = 36
"""Points per vital on the ward board's sparklines (10 minutes each over 6 hours)."""
_CHART_STEP = {Metric.TEMPERATURE: 0.1}
"""The chart's resolution: whole numbers, tenths of a degree for temperature."""
_SCORED: dict[Metric, Callable[[float], int]] = {
    Metric.RESP_RATE: rr_score, Metric.BP_SYSTOLIC: sbp_score, Metric.HEART_RATE: pulse_score,
    Metric.TEMPERATURE: temp_score,
}


def this_episode(profile: Profile | None, twin: Twin | None, alerts: PatientAlerts | None,
                 history: Sequence[HistoryPoint] = ()) -> tuple[Twin | None, PatientAlerts | None, list[HistoryPoint]]:
    """What belongs to the patient's current episode: nothing measured or done at or before their last discharge
    (``Profile.last_discharged_at``). Readings from then are dropped (a twin left with none is shown as no data),
    and so are acknowledgements: an alert still open is shown, as it is, but unacknowledged. Never hides an
    open alert."""
    since = profile.last_discharged_at if profile is not None else 0
    if not since:
        return twin, alerts, list(history)
    if twin is not None:
        vitals = {m: v for m, v in twin.vitals.items() if v.last_raw_at > since}
        observations = {m: o for m, o in twin.observations.items() if o.measured_at > since}
        quality = {m: q for m, q in twin.quality.items() if m in vitals}
        twin = (dataclasses.replace(twin, vitals=vitals, observations=observations, quality=quality)
                if vitals or observations else None)
    if alerts is not None:
        alerts = dataclasses.replace(alerts, open={
            c: a if a.acknowledged_at is None or a.acknowledged_at > since
            else dataclasses.replace(a, acknowledged_by=None, acknowledged_at=None)
            for c, a in alerts.open.items()})
    return twin, alerts, [p for p in history if p[0] > since]


def alert_model(patient_id: str, a: OpenAlert) -> models.Alert:
    return models.Alert(
        alert_id=a.alert_id, patient_id=patient_id, condition=a.condition.value,
        level=a.level.name.lower(),
        raised_at=a.raised_at, escalated_at=a.escalated_at, acknowledged_by=a.acknowledged_by,
        acknowledged_at=a.acknowledged_at,
    )


def open_alerts(states: Sequence[PatientAlerts]) -> list[models.Alert]:
    """Every open alert, highest level first, then newest first."""
    pairs = [(s.patient_id, a) for s in states for a in s.open.values()]
    pairs.sort(key=lambda pa: (-int(pa[1].level), -pa[1].raised_at, pa[1].alert_id))
    return [alert_model(pid, a) for pid, a in pairs]


def news2_model(s: Score) -> models.News2:
    return models.News2(
        total=s.total, subscores={p.value: v for p, v in s.subscores.items()}, red_flag=s.red_flag,
        band=s.risk.value, partial=s.partial, missing=[p.value for p in s.missing],
        assumed=[a.text for a in s.assumed],
    )


def summary(patient_id: str, twin: Twin | None, profile: Profile | None, alerts: PatientAlerts | None,
            now_ms: int, settings: RiskSettings | None = None,
            calibration: Calibration | None = None) -> models.PatientSummary:
    """``settings``: the risk settings of the policy file the workers run (the code defaults if None);
    ``calibration``: its ``[calibration]``, which gives ``p_news2_5_60min_calibrated`` (null without one)."""
    settings = settings or RiskSettings()
    opened = list(alerts.open.values()) if alerts else []
    highest = max((a.level for a in opened), default=None)
    if twin is None:
        return models.PatientSummary(
            patient_id=patient_id, news2=None, p_news2_5_60min=None, p_news2_7_60min=None, data_quality=None,
            stale=[], last_reading_at=None, open_alerts=len(opened),
            highest_alert=highest.name.lower() if highest else None,
        )
    r = risk(twin, profile, now_ms, settings)
    shares = [q.valid_share for q in twin.quality.values()]
    views = vital_views(twin, now_ms, dict(settings.stale_after_ms))
    last = max((v.last_raw_at for v in twin.vitals.values()), default=None)
    subscores = {FILTERED_PARAMS[p]: v for p, v in r.now.subscores.items() if p in FILTERED_PARAMS}
    briefs = {}
    for v in views:
        q = twin.quality.get(v.metric)
        briefs[v.metric.value] = models.VitalBrief(
            estimate=round(v.estimate, 2), unit=v.unit, trend_per_min=round(v.trend_per_min, 3),
            last_raw_at=twin.vitals[v.metric].last_raw_at, stale=v.stale,
            data_quality=round(q.valid_share, 3) if q else None, news2_subscore=subscores.get(v.metric))
    return models.PatientSummary(
        patient_id=patient_id,
        news2=news2_model(r.now),
        p_news2_5_60min=round(r.p(5, RISK_HORIZON_MIN), 4),
        p_news2_5_60min_calibrated=_calibrated(calibration, r.p(5, RISK_HORIZON_MIN)),
        p_news2_7_60min=round(r.p(7, RISK_HORIZON_MIN), 4),
        data_quality=round(sum(shares) / len(shares), 4) if shares else None,
        stale=[v.metric.value for v in views if v.stale],
        unconfirmed={p.value: u.subscore for p, u in r.unconfirmed.items()},
        last_reading_at=last,
        open_alerts=len(opened),
        highest_alert=highest.name.lower() if highest else None,
        vitals=briefs,
    )


def _calibrated(calibration: Calibration | None, raw: float) -> float | None:
    if calibration is None or calibration.threshold != 5 or calibration.horizon_min != RISK_HORIZON_MIN:
        return None
    return round(calibration.apply(raw), 4)


def by_risk(summaries: list[models.PatientSummary]) -> list[models.PatientSummary]:
    """Highest predicted risk first (P(NEWS2 >= 7), then >= 5, then NEWS2 now); no twin yet goes last."""
    return sorted(summaries, key=lambda s: (
        -(s.p_news2_7_60min or 0.0), -(s.p_news2_5_60min or 0.0), -(s.news2.total if s.news2 else -1),
        s.patient_id,
    ))


def detail(patient_id: str, twin: Twin | None, profile: Profile | None, alerts: PatientAlerts | None,
           history: Sequence[HistoryPoint], now_ms: int, settings: RiskSettings | None = None,
           calibration: Calibration | None = None) -> models.PatientDetail:
    settings = settings or RiskSettings()
    vitals = []
    scale2 = profile is not None and profile.spo2_scale2
    flow = twin.observations.get(Metric.O2_FLOW) if twin is not None else None
    on_oxygen = flow is None or flow.value > 0  # unknown counts as oxygen on scale 2 (docs/news2.md)
    scored = ({FILTERED_PARAMS[p]: u for p, u in unconfirmed_scores(twin, profile, now_ms, settings).items()}
              if twin is not None else {})
    for v in vital_views(twin, now_ms, dict(settings.stale_after_ms)) if twin is not None else []:
        assert twin is not None
        state = twin.vitals[v.metric]
        u = scored.get(v.metric)
        unconfirmed = None
        if state.unconfirmed is not None:
            unconfirmed = models.UnconfirmedReading(value=state.unconfirmed, measured_at=state.unconfirmed_at,
                                                    news2_subscore=u.subscore if u is not None else None)
        q = twin.quality.get(v.metric)
        cone = [forecast_vital(v.metric, state, now_ms, m, Scenario.DAMPED) for m in FORECAST_MINUTES]
        lo, hi = CATALOGUE[v.metric].possible
        vitals.append(models.Vital(
            metric=v.metric.value, unit=v.unit, estimate=v.estimate, sd=v.sd, low95=v.low95, high95=v.high95,
            trend_per_min=v.trend_per_min, last_raw=v.last_raw, last_raw_at=state.last_raw_at, age_s=v.age_s,
            stale=v.stale,
            baseline=state.baseline if state.baseline_minutes >= BASELINE_MATURE_MIN else None,
            data_quality=q.valid_share if q else None,
            # A damped trend runs on past what a body can do (activity below 0 steps/min): clipped to the possible.
            forecast=[models.ForecastPoint(minutes=f.horizon_min, mean=_clip(f.mean, lo, hi),
                                           low95=_clip(f.low95, lo, hi), high95=_clip(f.high95, lo, hi))
                      for f in cone],
            unconfirmed=unconfirmed,
            possible=(lo, hi),
            news2_bands=news2_bands(v.metric, scale2, on_oxygen),
        ))
    return models.PatientDetail(
        summary=summary(patient_id, twin, profile, alerts, now_ms, settings, calibration),
        age_band=profile.age_band if profile else None,
        conditions=sorted(profile.conditions) if profile else [],
        targets={m.value: r for m, r in profile.targets.items()} if profile else {},
        spo2_scale=2 if scale2 else 1,
        vitals=vitals,
        history=[models.HistoryPoint(at=int(t), metric=str(m), raw=float(raw), estimate=float(est), sd=float(sd),
                                     outcome=str(o)) for t, m, raw, est, sd, o in history],
        alerts=open_alerts([alerts]) if alerts else [],
        policy_id=alerts.policy_id if alerts else None,
    )


def _clip(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)


def news2_bands(metric: Metric, scale2: bool = False, on_oxygen: bool = True) -> list[models.ScoreBand]:
    """The NEWS2 chart's bands of ``metric`` over its possible range, from the chart's own scoring functions: each
    chart value (a whole number, or tenths of a degree) scores as the chart says, and a band's edges lie half a
    step outside its first and last values. Empty for a vital NEWS2 does not score."""
    score: Callable[[float], int]
    if metric is Metric.SPO2:
        score = (lambda x: spo2_scale2_score(x, on_oxygen)) if scale2 else spo2_scale1_score
    elif metric in _SCORED:
        score = _SCORED[metric]
    else:
        return []
    lo, hi = CATALOGUE[metric].possible
    step = _CHART_STEP.get(metric, 1.0)
    bands: list[models.ScoreBand] = []
    n = round((hi - lo) / step)
    for i in range(n + 1):
        value = round(lo + i * step, 6)
        s = score(value)
        low, high = max(value - step / 2, lo), min(value + step / 2, hi)
        if bands and bands[-1].score == s:
            bands[-1].high = high
        else:
            bands.append(models.ScoreBand(low=round(low, 6), high=round(high, 6), score=s))
    for b in bands:
        b.high = round(b.high, 6)
    return bands


def sparklines(patient_id: str, history: Sequence[HistoryPoint], now_ms: int, hours: float,
               buckets: int = SPARKLINE_BUCKETS) -> models.PatientTrend:
    """The mean estimate of each vital per bucket of the last ``hours``; a bucket with no point is left out
    (a gap in the line, not a made-up value). Points from the future (a clock ahead) are left out too."""
    start = now_ms - hours * 3_600_000
    width = (now_ms - start) / buckets
    sums: dict[str, dict[int, list[float]]] = {}
    for at, metric, _raw, estimate, _sd, _outcome in history:
        if not start <= at <= now_ms:
            continue
        b = min(int((at - start) // width), buckets - 1)
        acc = sums.setdefault(str(metric), {}).setdefault(b, [0.0, 0.0])
        acc[0] += float(estimate)
        acc[1] += 1.0
    return models.PatientTrend(patient_id=patient_id, vitals={
        m: [(int(start + (b + 0.5) * width), round(total / count, 2)) for b, (total, count) in sorted(per.items())]
        for m, per in sums.items()})
