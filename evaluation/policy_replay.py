"""Replaying the clinical alert policy on a recorded risk stream, for tuning ``[policy]`` without rerunning the twin.

``evaluation.cohort.RecordingProcessor`` records, at every evaluation the worker makes, what the clinical level
depends on (``risk_row``: event time, NEWS2 now and its band, the joint drift, P(NEWS2 >= 5) and P(NEWS2 >= 7)
at 30 and 60 min, the activity level the exertion hold reads and whether the hold is barred: SpO2 scoring 3 or
consciousness not alert, ``alerts.policy.exertion_of``). ``clinical_levels`` computes
``alerts.policy.clinical_level`` on those rows for any ``PolicySettings`` (vectorised; equal to it row by row,
tests/unit/evaluation/test_policy_replay.py), and ``replay`` runs ``alerts.policy.decide`` on them: the clinical
condition's alerts are decided by its own level, the exertion inputs and event time only, so for settings that keep
the risk and the evaluation cadence (``[risk]``, ``[evaluation]``) the replayed alerts are the ones the worker would
have raised (the test compares them with a live run).
Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from alerts.policy import Condition, Exertion, Kind, Level, PatientAlerts, PolicySettings, decide, never_held
from twin_state.news2 import RiskBand
from twin_state.risk import Risk

BANDS = tuple(RiskBand)
"""Band codes of ``risk_row`` (column ``BAND``)."""
HORIZONS = (30.0, 60.0)
T, TOTAL, BAND, DRIFT, P5_30, P5_60, P7_30, P7_60, ACTIVITY, NEVER_HELD = range(10)
COLUMNS = 10


def risk_row(t: int, r: Risk) -> tuple[float, ...]:
    """What the clinical level rests on at one evaluation (NaN for a horizon the risk settings do not compute)."""
    def p(threshold: int, h: float) -> float:
        return r.p_reach.get((threshold, h), math.nan)

    return (float(t), float(r.now.total), float(BANDS.index(r.now.risk)),
            math.nan if r.drift is None else float(r.drift),
            p(5, 30.0), p(5, 60.0), p(7, 30.0), p(7, 60.0),
            math.nan if r.activity is None else float(r.activity), 1.0 if never_held(r) else 0.0)


def _exertion(row: Sequence[float], settings: PolicySettings) -> Exertion:
    a = row[ACTIVITY] if len(row) > ACTIVITY else math.nan
    barred = len(row) > NEVER_HELD and row[NEVER_HELD] > 0
    return Exertion(not math.isnan(a) and a >= settings.exertion_activity, barred)


def _p_column(threshold: int, horizon_min: float) -> int:
    if horizon_min not in HORIZONS:
        raise ValueError(f"horizon {horizon_min:g} min is not recorded (recorded: {HORIZONS})")
    return {(5, 30.0): P5_30, (5, 60.0): P5_60, (7, 30.0): P7_30, (7, 60.0): P7_60}[(threshold, horizon_min)]


def clinical_levels(rows: NDArray[np.float64], settings: PolicySettings) -> NDArray[np.int64]:
    """``alerts.policy.clinical_level`` of every row, as ``Level`` values."""
    band = rows[:, BAND].astype(np.int64)
    now_of_band = np.zeros(len(BANDS), dtype=np.int64)
    now_of_band[BANDS.index(RiskBand.HIGH)] = Level.HIGH
    now_of_band[BANDS.index(RiskBand.MEDIUM)] = Level.MEDIUM
    now_of_band[BANDS.index(RiskBand.LOW_MEDIUM)] = settings.single_three
    now = now_of_band[band]
    h = settings.predicted_horizon_min
    p7 = rows[:, _p_column(7, h)]
    p5 = rows[:, _p_column(5, h)]
    drift = rows[:, DRIFT]
    with np.errstate(invalid="ignore"):
        drifting = (settings.drift_medium > 0) & ~np.isnan(drift) & (drift >= settings.drift_medium)
        predicted = np.where(p7 >= settings.predicted_high, int(Level.HIGH),
                             np.where((p5 >= settings.predicted_medium) | drifting, int(Level.MEDIUM), 0))
    return np.maximum(now, predicted).astype(np.int64)


@dataclass(frozen=True, slots=True)
class ReplayedAlert:
    at: int
    """Event time (ms) of the raise or escalation."""
    level: Level
    row: int
    """Index of the evaluation (row of the stream) it was decided at."""


def replay(rows: NDArray[np.float64], settings: PolicySettings, level: Level = Level.MEDIUM,
           patient_id: str = "replay") -> list[ReplayedAlert]:
    """The clinical alerts at ``level`` or above that ``decide`` raises on the stream, in order: raised there, or
    escalated (worsened) to a higher level that is at least ``level``; as ``evaluation.cohort.clinical_alert_times``
    counts them."""
    levels = clinical_levels(rows, settings)
    state = PatientAlerts(patient_id)
    current: dict[str, Level] = {}
    out: list[ReplayedAlert] = []
    cond = Condition.CLINICAL
    hold = settings.exertion_hold_max_ms > 0
    if hold and rows.shape[1] <= NEVER_HELD:
        raise ValueError("these runs were recorded without the activity: re-run the cohort for the exertion hold")
    for i in range(len(rows)):
        lv = Level(int(levels[i]))
        exertion = _exertion(rows[i], settings) if hold else None
        if (lv is Level.NONE and cond not in state.open and cond not in state.pending
                and (exertion is None or not exertion.active)):
            continue  # nothing open or pending, no exertion to remember: decide would change nothing here
        state, events = decide(state, {cond: lv}, int(rows[i, T]), settings, exertion=exertion)
        for e in events:
            if e.kind is Kind.RESOLVED:
                current.pop(e.alert_id, None)
                continue
            before = current.get(e.alert_id, Level.NONE)
            if e.level >= level and e.level > before:
                out.append(ReplayedAlert(e.at, e.level, i))
            current[e.alert_id] = max(before, e.level)
    return out


def cause(row: Sequence[float], settings: PolicySettings, level: Level = Level.MEDIUM) -> str:
    """What an alert at ``level`` decided at this row rests on: at HIGH ``news2_7`` (NEWS2 now 7 or more) or
    ``predicted_7``; at MEDIUM ``news2_5`` (NEWS2 now 5-6), ``predicted_5`` or ``drift``; ``other`` when the row is
    below it (a level that persisted from earlier rows, or an escalation of an alert raised below it)."""
    band = BANDS[int(row[BAND])]
    h = settings.predicted_horizon_min
    if level >= Level.HIGH:
        if band is RiskBand.HIGH:
            return "news2_7"
        if row[_p_column(7, h)] >= settings.predicted_high:
            return "predicted_7"
        return "other"
    if band in (RiskBand.HIGH, RiskBand.MEDIUM):
        return "news2_5"
    if row[_p_column(7, h)] >= settings.predicted_high or row[_p_column(5, h)] >= settings.predicted_medium:
        return "predicted_5"
    d = row[DRIFT]
    if settings.drift_medium > 0 and not math.isnan(d) and d >= settings.drift_medium:
        return "drift"
    return "other"
