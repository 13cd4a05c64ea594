"""Pure: what the feed shows of a twin, its profile and its alert state at a moment. No I/O here.

Built from the same core functions as ``twinmon twin show`` / ``forecast`` (``vital_views``, ``forecast_vital``,
``risk``), so the page and the CLI read the same numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from alerts.policy import OpenAlert, PatientAlerts
from feed import models
from twin_state.catalogue import BASELINE_MATURE_MIN
from twin_state.forecast import Scenario, forecast_vital
from twin_state.history import HistoryPoint
from twin_state.news2 import Score
from twin_state.profile import Profile
from twin_state.risk import FILTERED_PARAMS, RiskSettings, risk, unconfirmed_scores
from twin_state.twin import Twin
from twin_state.view import vital_views

FORECAST_MINUTES = (0.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0)
RISK_HORIZON_MIN = 60.0


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
            now_ms: int, settings: RiskSettings | None = None) -> models.PatientSummary:
    """``settings``: the risk settings of the policy file the workers run (the code defaults if None)."""
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
    return models.PatientSummary(
        patient_id=patient_id,
        news2=news2_model(r.now),
        p_news2_5_60min=round(r.p(5, RISK_HORIZON_MIN), 4),
        p_news2_7_60min=round(r.p(7, RISK_HORIZON_MIN), 4),
        data_quality=round(sum(shares) / len(shares), 4) if shares else None,
        stale=[v.metric.value for v in views if v.stale],
        unconfirmed={p.value: u.subscore for p, u in r.unconfirmed.items()},
        last_reading_at=last,
        open_alerts=len(opened),
        highest_alert=highest.name.lower() if highest else None,
    )


def by_risk(summaries: list[models.PatientSummary]) -> list[models.PatientSummary]:
    """Highest predicted risk first (P(NEWS2 >= 7), then >= 5, then NEWS2 now); no twin yet goes last."""
    return sorted(summaries, key=lambda s: (
        -(s.p_news2_7_60min or 0.0), -(s.p_news2_5_60min or 0.0), -(s.news2.total if s.news2 else -1),
        s.patient_id,
    ))


def detail(patient_id: str, twin: Twin | None, profile: Profile | None, alerts: PatientAlerts | None,
           history: Sequence[HistoryPoint], now_ms: int, settings: RiskSettings | None = None) -> models.PatientDetail:
    settings = settings or RiskSettings()
    vitals = []
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
        vitals.append(models.Vital(
            metric=v.metric.value, unit=v.unit, estimate=v.estimate, sd=v.sd, low95=v.low95, high95=v.high95,
            trend_per_min=v.trend_per_min, last_raw=v.last_raw, last_raw_at=state.last_raw_at, age_s=v.age_s,
            stale=v.stale,
            baseline=state.baseline if state.baseline_minutes >= BASELINE_MATURE_MIN else None,
            data_quality=q.valid_share if q else None,
            forecast=[models.ForecastPoint(minutes=f.horizon_min, mean=f.mean, low95=f.low95, high95=f.high95)
                      for f in cone],
            unconfirmed=unconfirmed,
        ))
    return models.PatientDetail(
        summary=summary(patient_id, twin, profile, alerts, now_ms, settings),
        age_band=profile.age_band if profile else None,
        conditions=sorted(profile.conditions) if profile else [],
        targets={m.value: r for m, r in profile.targets.items()} if profile else {},
        vitals=vitals,
        history=[models.HistoryPoint(at=int(t), metric=str(m), raw=float(raw), estimate=float(est), sd=float(sd),
                                     outcome=str(o)) for t, m, raw, est, sd, o in history],
        alerts=open_alerts([alerts]) if alerts else [],
        policy_id=alerts.policy_id if alerts else None,
    )
