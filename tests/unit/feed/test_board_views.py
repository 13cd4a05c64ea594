"""What the ward board and the patient view are given: vitals at a glance with NEWS2 subscores, sparklines from the
history, the chart's bands per vital, forecasts that stay within what a body can do."""

from __future__ import annotations

import pytest

from feed import presenters
from tests.unit.feed.test_feed import NOW, _twin
from twin_state import risk as risk_tables
from twin_state.catalogue import CATALOGUE, Metric
from twin_state.news2 import Param
from twin_state.profile import HYPERCAPNIC, Profile
from twin_state.twin import Position, Reading, step


def test_the_summary_carries_each_vital_with_its_subscore_and_trend() -> None:
    s = presenters.summary("p-sick", _twin("p-sick", 128, 26), None, None, NOW)
    hr, rr, spo2 = s.vitals["heart_rate"], s.vitals["resp_rate"], s.vitals["spo2"]
    assert hr.news2_subscore == 2 and rr.news2_subscore == 3 and spo2.news2_subscore == 0
    assert 120 < hr.estimate < 135 and hr.unit == "/min" and not hr.stale and hr.last_raw_at <= NOW
    assert abs(hr.trend_per_min) < 1.0


@pytest.mark.parametrize(("metric", "param"), [(Metric.RESP_RATE, Param.RR), (Metric.BP_SYSTOLIC, Param.SBP),
                                               (Metric.HEART_RATE, Param.PULSE), (Metric.TEMPERATURE, Param.TEMP)])
def test_the_bands_drawn_are_the_ones_predicted_risk_scores_by(metric: Metric, param: Param) -> None:
    # Built from the chart's scoring functions; the risk model's tables were written by hand from the chart.
    lo, hi = CATALOGUE[metric].possible
    drawn = [(round(b.low, 6), round(b.high, 6), b.score) for b in presenters.news2_bands(metric)]
    table = [(round(max(a, lo), 6), round(min(b, hi), 6), s) for a, b, s in risk_tables._FORECAST_BANDS[param]]
    assert drawn == table


def test_spo2_bands_follow_the_patients_scale() -> None:
    scale1 = [(b.low, b.high, b.score) for b in presenters.news2_bands(Metric.SPO2)]
    assert scale1 == [(0.0, 91.5, 3), (91.5, 93.5, 2), (93.5, 95.5, 1), (95.5, 100.0, 0)]
    scale2 = [(b.low, b.high, b.score) for b in presenters.news2_bands(Metric.SPO2, scale2=True)]
    assert [b[2] for b in scale2] == [3, 2, 1, 0, 1, 2, 3]  # on oxygen, 97 % and above scores 3
    assert presenters.news2_bands(Metric.ACTIVITY) == [] and presenters.news2_bands(Metric.BP_DIASTOLIC) == []
    twin = _twin("p-2", 80, 16)
    d = presenters.detail("p-2", twin, Profile("p-2", "ward-7", NOW, conditions=frozenset({HYPERCAPNIC})), None,
                          [], NOW)
    assert d.spo2_scale == 2
    assert [b.score for b in next(v for v in d.vitals if v.metric == "spo2").news2_bands] == [3, 2, 1, 0, 1, 2, 3]


def test_a_forecast_never_leaves_the_possible_range() -> None:
    # Walking, then sitting down: activity falls fast, and a damped trend would carry it below 0 steps/min.
    twin = _twin("p-3", 80, 16, minutes=10)
    seq = 10_000
    for i in range(40):
        seq += 1
        value = 105.0 if i < 30 else 0.0
        reading = Reading("p-3", "wrist", Metric.ACTIVITY, value, NOW - 40 * 15_000 + i * 15_000, seq, 0.95)
        twin, _ = step(twin, reading, Position(0, seq))
    d = presenters.detail("p-3", twin, None, None, [], NOW)
    activity = next(v for v in d.vitals if v.metric == "activity")
    assert activity.possible == CATALOGUE[Metric.ACTIVITY].possible
    assert all(0.0 <= f.low95 <= f.mean <= f.high95 <= 400.0 for f in activity.forecast)
    assert activity.forecast[-1].low95 == 0.0  # it would have gone below: clipped, not dropped


def test_sparklines_average_each_bucket_and_leave_gaps_and_the_future_out() -> None:
    hour = 3_600_000
    history = [(NOW - 5 * hour - 60_000, "heart_rate", 80.0, 80.0, 1.0, "applied"),
               (NOW - 5 * hour - 30_000, "heart_rate", 90.0, 84.0, 1.0, "applied"),
               (NOW - 7 * hour, "heart_rate", 60.0, 60.0, 1.0, "applied"),  # before the window
               (NOW - 60_000, "spo2", 95.0, 95.5, 0.5, "applied"),
               (NOW + 60_000, "spo2", 20.0, 20.0, 0.5, "applied")]  # after now: a clock ahead
    t = presenters.sparklines("p-1", history, NOW, 6.0)
    assert t.patient_id == "p-1"
    (at, value), = t.vitals["heart_rate"]
    assert value == 82.0 and NOW - 6 * hour < at < NOW - 4 * hour
    assert [v for _, v in t.vitals["spo2"]] == [95.5]
