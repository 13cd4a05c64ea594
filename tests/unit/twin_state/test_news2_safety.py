"""An incomplete NEWS2 never reads "low"; what the twin assumes is stated; scale 2 with oxygen unknown, estimates
between chart values and aged nurse entries all err toward the worse band; the drift rule counts both sides."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from alerts.policy import (
    Condition,
    Level,
    PatientAlerts,
    PolicySettings,
    clinical_level,
    clinical_reason,
    decide,
    reason_head,
)
from cli.main import main
from evaluation.cohort import ConfigError, parse_config, settings_json
from twin_state import kalman
from twin_state.catalogue import Metric
from twin_state.news2 import (
    AIR,
    ALERT,
    SCALE2_AS_OXYGEN,
    Inputs,
    Param,
    RiskBand,
    band,
    describe,
    pulse_score,
    rr_score,
    sbp_score,
    score,
    spo2_scale1_score,
    spo2_scale2_score,
    temp_score,
    worse_neighbour,
)
from twin_state.profile import HYPERCAPNIC, Profile
from twin_state.risk import (
    _BANDS,
    _FORECAST_BANDS,
    _FORECAST_SPO2_SCALE1,
    _FORECAST_SPO2_SCALE2_AIR,
    _FORECAST_SPO2_SCALE2_O2,
    _SPO2_SCALE1,
    _SPO2_SCALE2_AIR,
    _SPO2_SCALE2_O2,
    ZERO_BANDS,
    Interval,
    Risk,
    RiskSettings,
    _distribution,
    drift_score,
    drift_term,
    news2_now,
    risk,
)
from twin_state.twin import Position, Reading, Twin, step

from .test_risk import STABLE, now_of, twin_from
from .test_slow_trend import with_drift

ALL = [Param.RR, Param.SPO2, Param.ON_OXYGEN, Param.SBP, Param.PULSE, Param.ACVPU, Param.TEMP]
WEARABLE = Inputs(rr=16, spo2=97, sbp=120, pulse=70, temp=37.0)


# --- 1. an incomplete score is never banded "low" -------------------------------------------------------------

@pytest.mark.parametrize(
    "total,red_flag,partial,expected",
    [(0, False, True, RiskBand.INCOMPLETE), (4, False, True, RiskBand.INCOMPLETE), (4, False, False, RiskBand.LOW),
     (0, False, False, RiskBand.LOW), (3, True, True, RiskBand.LOW_MEDIUM), (4, True, True, RiskBand.LOW_MEDIUM),
     (5, False, True, RiskBand.MEDIUM), (6, True, True, RiskBand.MEDIUM), (7, False, True, RiskBand.HIGH),
     (20, True, True, RiskBand.HIGH)],
)
def test_a_partial_score_below_every_threshold_is_incomplete_and_above_keeps_its_band(
        total: int, red_flag: bool, partial: bool, expected: RiskBand) -> None:
    assert band(total, red_flag, partial=partial) is expected


def test_a_partial_single_three_keeps_the_configured_band() -> None:
    assert band(3, True, RiskBand.MEDIUM, partial=True) is RiskBand.MEDIUM


def test_each_missing_parameter_alone_makes_a_low_score_incomplete_and_is_named() -> None:
    full = dict(rr=16.0, spo2=97.0, on_oxygen=False, sbp=120.0, pulse=70.0, temp=37.0, acvpu="A")
    assert score(Inputs(**full)).risk is RiskBand.LOW  # type: ignore[arg-type]
    for param in ALL:
        s = score(Inputs(**{**full, param.value: None}))  # type: ignore[arg-type]
        assert s.risk is RiskBand.INCOMPLETE and s.missing == (param,) and s.partial


@pytest.mark.parametrize("doc", [{}, {"spo2_scale": 2}])
def test_news2_command_on_nothing_answers_incomplete_with_everything_missing(doc: dict[str, object]) -> None:
    out = CliRunner().invoke(main, ["news2"], input=json.dumps(doc) + "\n")
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert result["risk"] == "incomplete" and result["partial"] and result["total"] == 0
    assert result["missing"] == [p.value for p in ALL] and result["assumed"] == []


def test_news2_command_partial_with_points_keeps_the_band() -> None:
    out = CliRunner().invoke(main, ["news2"], input='{"rr": 26, "pulse": 140, "sbp": 85}\n')
    result = json.loads(out.output)
    assert result["risk"] == "high" and result["partial"] and result["missing"] == ["spo2", "on_oxygen", "acvpu",
                                                                                     "temp"]


def test_incomplete_maps_to_no_clinical_level_and_partial_points_still_alert() -> None:
    s = score(Inputs(pulse=70))
    assert s.risk is RiskBand.INCOMPLETE
    r = Risk(s, {(5, 60.0): 0.0, (7, 60.0): 0.0}, {})
    assert clinical_level(r, PolicySettings()) is Level.NONE
    high = Risk(score(Inputs(rr=26, pulse=140, sbp=85)), {(5, 60.0): 1.0, (7, 60.0): 1.0}, {})
    assert high.now.partial and clinical_level(high, PolicySettings()) is Level.HIGH


def test_the_feed_names_every_band_and_what_is_missing_and_assumed() -> None:
    from typing import get_args

    from feed.models import News2
    from feed.presenters import news2_model

    assert set(get_args(News2.model_fields["band"].annotation)) == {b.value for b in RiskBand}
    m = news2_model(score(Inputs(rr=16, spo2=97), assume=(ALERT, AIR)))
    assert m.band == "incomplete" and m.partial and m.missing == ["sbp", "pulse", "temp"]
    assert m.assumed == ["consciousness alert", "air"]


def test_describe_says_band_missing_and_assumed_in_one_line() -> None:
    assert describe(score(Inputs(rr=16, spo2=97), assume=(ALERT, AIR))) == (
        "NEWS2 0 incomplete, missing sbp pulse temp; assumed: consciousness alert, air")
    assert describe(score(Inputs(rr=16, spo2=97, on_oxygen=False, sbp=120, pulse=70, temp=37.0, acvpu="A"))) == (
        "NEWS2 0 low")


# --- 2. assumptions are stated -------------------------------------------------------------------------------

def test_assumed_alert_and_air_are_scored_zero_listed_and_not_missing() -> None:
    s = score(WEARABLE, assume=(ALERT, AIR))
    assert s.subscores[Param.ACVPU] == 0 and s.subscores[Param.ON_OXYGEN] == 0
    assert s.missing == () and s.assumed == (ALERT, AIR) and s.risk is RiskBand.LOW
    recorded = score(Inputs(rr=16, spo2=97, sbp=120, pulse=70, temp=37.0, acvpu="V", on_oxygen=True),
                     assume=(ALERT, AIR))
    assert recorded.assumed == () and recorded.subscores[Param.ACVPU] == 3  # a recorded value wins


def test_the_twin_assumes_alert_and_air_for_a_wearable_patient_and_risk_says_so() -> None:
    twin = twin_from(STABLE)
    r = risk(twin, None, now_of(twin))
    assert r.now.missing == () and r.assumed == (ALERT, AIR) and r.now.risk is RiskBand.LOW


def test_the_clinical_reason_states_the_score_and_the_assumptions() -> None:
    twin = twin_from({**STABLE, Metric.RESP_RATE: [22.0] * 120, Metric.HEART_RATE: [112.0] * 120,
                      Metric.TEMPERATURE: [38.5] * 120})
    r = risk(twin, None, now_of(twin))
    assert r.now.total == 5
    assert clinical_reason(r, PolicySettings()).startswith("NEWS2 5")
    assert clinical_reason(r, PolicySettings()).endswith("assumed: consciousness alert, air")
    partial = Risk(score(Inputs(rr=26, pulse=140, sbp=85)), {(5, 60.0): 1.0, (7, 60.0): 1.0}, {})
    assert clinical_reason(partial, PolicySettings()) == "NEWS2 9 partial, missing spo2 on_oxygen acvpu temp"


def test_decide_gives_raised_and_escalated_events_the_reason_and_ids_ignore_it() -> None:
    settings = PolicySettings(persist_ms=0)
    why = {Condition.CLINICAL: "NEWS2 5, assumed: consciousness alert, air"}
    plain_state, plain = decide(PatientAlerts("p-1"), {Condition.CLINICAL: Level.MEDIUM}, 0, settings)
    state, raised = decide(PatientAlerts("p-1"), {Condition.CLINICAL: Level.MEDIUM}, 0, settings, why)
    assert raised[0].reason == "NEWS2 5, assumed: consciousness alert, air" and plain[0].reason == "clinical at MEDIUM"
    assert [e.event_id for e in raised] == [e.event_id for e in plain]
    _, worse = decide(state, {Condition.CLINICAL: Level.HIGH}, 1, settings, {Condition.CLINICAL: "NEWS2 7"})
    _, worse_plain = decide(plain_state, {Condition.CLINICAL: Level.HIGH}, 1, settings)
    assert worse[0].reason == "worsened: NEWS2 7" and reason_head(worse[0].reason) == "worsened"
    assert worse[0].event_id == worse_plain[0].event_id and worse_plain[0].reason == "worsened"


# --- 3. scale 2 with oxygen unknown ---------------------------------------------------------------------------

SCALE2_UNKNOWN = [(83, 3), (84, 2), (85, 2), (86, 1), (87, 1), (88, 0), (92, 0), (93, 1), (94, 1), (95, 2), (96, 2),
                  (97, 3), (100, 3)]


@pytest.mark.parametrize("spo2,expected", SCALE2_UNKNOWN)
def test_scale_2_with_oxygen_unknown_scores_as_if_on_oxygen(spo2: float, expected: int) -> None:
    s = score(Inputs(spo2=spo2, spo2_scale=2))
    assert s.subscores[Param.SPO2] == expected and Param.ON_OXYGEN in s.missing and s.assumed == (SCALE2_AS_OXYGEN,)
    assert score(Inputs(spo2=spo2, spo2_scale=2, on_oxygen=False)).subscores[Param.SPO2] == (
        expected if spo2 <= 92 else 0)


def test_the_twin_scores_and_predicts_scale_2_with_oxygen_unknown_as_on_oxygen() -> None:
    copd = Profile("p-1", "w", 0, conditions=frozenset({HYPERCAPNIC}))
    twin = twin_from({**STABLE, Metric.SPO2: [98.0] * 120})
    t = now_of(twin)
    r = risk(twin, copd, t)
    assert r.now.subscores[Param.SPO2] == 3 and r.now.subscores[Param.ON_OXYGEN] == 0
    assert r.assumed == (ALERT, AIR, SCALE2_AS_OXYGEN) and r.p_param_3[Param.SPO2] > 0.8
    # A recorded "air" scores 98 % as 0, now and predicted.
    on_air, _ = step(twin, Reading("p-1", "nurse", Metric.O2_FLOW, 0.0, t, 1), Position(0, 99_999))
    r_air = risk(on_air, copd, t)
    assert r_air.now.subscores[Param.SPO2] == 0 and r_air.p_param_3[Param.SPO2] < 0.01 and r_air.assumed == (ALERT,)


# --- 4. estimates round toward the worse band ------------------------------------------------------------------

Chart = Callable[[float], int]
# (chart, estimate, worse-neighbour score, chart's half-up score): every edge of every band, from both sides.
ESTIMATES: list[tuple[str, Chart, float, float, int]] = [
    ("rr", rr_score, 1.0, 8.3, 3), ("rr", rr_score, 1.0, 8.7, 3), ("rr", rr_score, 1.0, 11.2, 1),
    ("rr", rr_score, 1.0, 11.8, 1), ("rr", rr_score, 1.0, 20.2, 2), ("rr", rr_score, 1.0, 20.0, 0),
    ("rr", rr_score, 1.0, 24.4, 3), ("rr", rr_score, 1.0, 12.0, 0), ("rr", rr_score, 1.0, 24.0, 2),
    ("spo2", spo2_scale1_score, 1.0, 91.6, 3), ("spo2", spo2_scale1_score, 1.0, 93.3, 2),
    ("spo2", spo2_scale1_score, 1.0, 95.9, 1), ("spo2", spo2_scale1_score, 1.0, 96.0, 0),
    ("sbp", sbp_score, 1.0, 90.6, 3), ("sbp", sbp_score, 1.0, 91.0, 2), ("sbp", sbp_score, 1.0, 100.9, 2),
    ("sbp", sbp_score, 1.0, 110.5, 1), ("sbp", sbp_score, 1.0, 111.0, 0), ("sbp", sbp_score, 1.0, 219.0, 0),
    ("sbp", sbp_score, 1.0, 219.1, 3),
    ("pulse", pulse_score, 1.0, 40.9, 3), ("pulse", pulse_score, 1.0, 50.5, 1), ("pulse", pulse_score, 1.0, 51.0, 0),
    ("pulse", pulse_score, 1.0, 90.0, 0), ("pulse", pulse_score, 1.0, 90.2, 1), ("pulse", pulse_score, 1.0, 110.1, 2),
    ("pulse", pulse_score, 1.0, 130.1, 3),
    ("temp", temp_score, 10.0, 35.04, 3), ("temp", temp_score, 10.0, 35.1, 1), ("temp", temp_score, 10.0, 36.08, 1),
    ("temp", temp_score, 10.0, 36.1, 0), ("temp", temp_score, 10.0, 38.0, 0), ("temp", temp_score, 10.0, 38.01, 1),
    ("temp", temp_score, 10.0, 39.01, 2),
]


@pytest.mark.parametrize("name,chart,per_unit,value,expected", ESTIMATES)
def test_an_estimate_between_chart_values_scores_the_worse_neighbour(
        name: str, chart: Chart, per_unit: float, value: float, expected: int) -> None:
    assert worse_neighbour(chart, value, per_unit) == expected


def test_typed_values_keep_the_charts_rounding_and_estimates_round_worse() -> None:
    typed = score(Inputs(sbp=90.6, pulse=90.2, temp=38.01, rr=20.3))
    assert dict(typed.subscores) == {Param.SBP: 2, Param.PULSE: 0, Param.TEMP: 0, Param.RR: 0}
    est = score(Inputs(sbp=90.6, pulse=90.2, temp=38.01, rr=20.3), estimate=True)
    assert dict(est.subscores) == {Param.SBP: 3, Param.PULSE: 1, Param.TEMP: 1, Param.RR: 2}
    low = score(Inputs(temp=35.04), estimate=True)
    assert low.subscores[Param.TEMP] == 3


def test_the_twins_news2_now_rounds_its_estimates_toward_the_worse_band() -> None:
    twin = twin_from({**STABLE, Metric.BP_SYSTOLIC: [90.6] * 120, Metric.HEART_RATE: [90.2] * 120})
    s = news2_now(twin, None, now_of(twin))
    assert s.subscores[Param.SBP] == 3 and s.subscores[Param.PULSE] == 1


TABLES: list[tuple[list[Interval], Chart, float]] = [
    (_BANDS[Param.RR], rr_score, 1.0), (_BANDS[Param.SBP], sbp_score, 1.0), (_BANDS[Param.PULSE], pulse_score, 1.0),
    (_BANDS[Param.TEMP], temp_score, 10.0), (_SPO2_SCALE1, spo2_scale1_score, 1.0),
    (_SPO2_SCALE2_AIR, lambda v: spo2_scale2_score(v, False), 1.0),
    (_SPO2_SCALE2_O2, lambda v: spo2_scale2_score(v, True), 1.0),
]


@pytest.mark.parametrize("table,chart,per_unit", TABLES)
def test_the_estimate_intervals_agree_with_the_twins_scoring_between_chart_values(
        table: list[Interval], chart: Chart, per_unit: float) -> None:
    # A grid that avoids chart values themselves (there the interval's closed end is a matter of measure zero).
    for i in range(30_000):
        x = 20.0 + i * 0.00733
        if abs(x * per_unit - round(x * per_unit)) < 1e-6:
            continue
        d = _distribution(table, x, 0.0)
        assert d.index(1.0) == worse_neighbour(chart, x, per_unit), x


FORECAST_TABLES: list[tuple[list[Interval], Chart]] = [
    (_FORECAST_BANDS[Param.RR], rr_score), (_FORECAST_BANDS[Param.SBP], sbp_score),
    (_FORECAST_BANDS[Param.PULSE], pulse_score), (_FORECAST_BANDS[Param.TEMP], temp_score),
    (_FORECAST_SPO2_SCALE1, spo2_scale1_score), (_FORECAST_SPO2_SCALE2_AIR, lambda v: spo2_scale2_score(v, False)),
    (_FORECAST_SPO2_SCALE2_O2, lambda v: spo2_scale2_score(v, True)),
]


@pytest.mark.parametrize("table,chart", FORECAST_TABLES)
def test_predicted_risks_intervals_are_the_chart_read_half_up(table: list[Interval], chart: Chart) -> None:
    # Readings still to come are charted as the chart rounds them; the edges sit half a chart unit out.
    for i in range(30_000):
        x = 20.0 + i * 0.00733
        if abs(x * 20 - round(x * 20)) < 1e-6:  # half-unit edges (and temperature's half-tenths)
            continue
        assert _distribution(table, x, 0.0).index(1.0) == chart(x), x


# --- 5. the ACVPU horizon --------------------------------------------------------------------------------------

def nurse(twin: Twin, metric: Metric, value: float, at: int, seq: int) -> Twin:
    out, _ = step(twin, Reading("p-1", "nurse", metric, value, at, seq), Position(0, 50_000 + seq))
    return out


@pytest.fixture(scope="module")
def stable() -> Twin:
    return twin_from({m: v * 5 for m, v in STABLE.items()})  # ten hours, so the vitals stay fresh


def test_an_alert_entry_counts_for_its_horizon_then_consciousness_is_missing(stable: Twin) -> None:
    t_end = now_of(stable)
    at = t_end - 5 * 3_600_000
    twin = nurse(stable, Metric.CONSCIOUSNESS, 0.0, at, 1)
    h = RiskSettings().acvpu_max_age_min
    assert h == 240.0
    within = news2_now(twin, None, at + int(h * 60_000))
    assert within.subscores[Param.ACVPU] == 0 and ALERT not in within.assumed and within.risk is RiskBand.LOW
    after = news2_now(twin, None, at + int(h * 60_000) + 1)
    assert Param.ACVPU in after.missing and after.risk is RiskBand.INCOMPLETE and ALERT not in after.assumed
    longer = news2_now(twin, None, at + int(h * 60_000) + 1, RiskSettings(acvpu_max_age_min=300.0))
    assert longer.subscores[Param.ACVPU] == 0


@pytest.mark.parametrize("code", [1.0, 2.0, 3.0, 4.0])
def test_an_abnormal_acvpu_never_ages_into_calmer_only_a_newer_entry_replaces_it(stable: Twin, code: float) -> None:
    t_end = now_of(stable)
    at = t_end - 9 * 3_600_000
    twin = nurse(stable, Metric.CONSCIOUSNESS, code, at, 1)
    late = news2_now(twin, None, t_end)
    assert late.subscores[Param.ACVPU] == 3 and late.red_flag
    assert risk(twin, None, t_end).p(5, 60.0) < 1.0 and clinical_level(risk(twin, None, t_end), PolicySettings()) >= (
        Level.LOW)
    calmer = nurse(twin, Metric.CONSCIOUSNESS, 0.0, t_end - 60_000, 2)
    assert news2_now(calmer, None, t_end).subscores[Param.ACVPU] == 0


def test_oxygen_keeps_its_own_horizon(stable: Twin) -> None:
    t_end = now_of(stable)
    at = t_end - 5 * 3_600_000
    twin = nurse(stable, Metric.O2_FLOW, 2.0, at, 1)
    assert news2_now(twin, None, t_end).subscores[Param.ON_OXYGEN] == 2  # 5 h < 12 h
    aged = news2_now(twin, None, t_end, RiskSettings(manual_max_age_min=240.0))
    assert Param.ON_OXYGEN in aged.missing and AIR not in aged.assumed


def test_the_acvpu_horizon_is_a_checked_risk_setting() -> None:
    _, e = parse_config({"risk": {"acvpu_max_age_min": 120.0}}, "a.toml")
    assert e.risk.acvpu_max_age_min == 120.0 and settings_json(e)["risk"]["acvpu_max_age_min"] == 120.0
    with pytest.raises(ConfigError, match="acvpu_max_age_min"):
        parse_config({"risk": {"acvpu_max_age_min": -1.0}}, "a.toml")


# --- 6. drift in both directions ------------------------------------------------------------------------------

def slow(level: float, trend: float, sd: float) -> kalman.LevelTrend:
    return kalman.LevelTrend(level, trend, 1.0, 0.0, sd * sd)


INSIDE_STILL = (0.0 - math.sqrt(2 / math.pi)) / math.sqrt(1 - 2 / math.pi)  # a two-sided vital that does not move


@pytest.mark.parametrize("param,lo,hi", [(Param.RR, 12.0, 20.0), (Param.SBP, 111.0, 219.0), (Param.PULSE, 51.0, 90.0),
                                         (Param.TEMP, 36.1, 38.0)])
def test_a_two_sided_vital_counts_falling_below_its_zero_band_rising_above_and_either_way_inside(
        param: Param, lo: float, hi: float) -> None:
    below, inside_lo, inside_hi, above = math.nextafter(lo, -math.inf), lo, math.nextafter(hi, -math.inf), hi
    assert drift_term(param, below, -2.0) == 2.0 and drift_term(param, below, 2.0) == -2.0
    assert drift_term(param, above, 2.0) == 2.0 and drift_term(param, above, -2.0) == -2.0
    for level in (inside_lo, (lo + hi) / 2, inside_hi):
        assert drift_term(param, level, 2.0) == drift_term(param, level, -2.0) == pytest.approx(
            (2.0 - math.sqrt(2 / math.pi)) / math.sqrt(1 - 2 / math.pi))
        assert drift_term(param, level, 0.0) == pytest.approx(INSIDE_STILL)


def test_saturation_is_one_sided_on_scale_1_and_two_sided_on_scale_2_on_oxygen() -> None:
    for level in (99.0, 90.0, 80.0):
        assert drift_term(Param.SPO2, level, -2.0) == 2.0 and drift_term(Param.SPO2, level, 2.0) == -2.0
    o2 = {**ZERO_BANDS, Param.SPO2: (88.0, 92.0)}
    assert drift_term(Param.SPO2, 92.0, 2.0, o2) == 2.0  # over-oxygenated and rising
    assert drift_term(Param.SPO2, 87.9, -2.0, o2) == 2.0
    assert drift_term(Param.SPO2, 90.0, 2.0, o2) == drift_term(Param.SPO2, 90.0, -2.0, o2) > 1.9


def test_inside_the_zero_band_a_vital_without_drift_adds_nothing_on_average_with_unit_spread() -> None:
    """The half-normal standardisation keeps the drift score a standard score when nothing drifts."""
    rng = random.Random(11)
    terms = [drift_term(Param.PULSE, 70.0, rng.gauss(0.0, 1.0)) for _ in range(100_000)]
    mean = sum(terms) / len(terms)
    sd = math.sqrt(sum((t - mean) ** 2 for t in terms) / len(terms))
    assert abs(mean) < 0.01 and abs(sd - 1.0) < 0.01


DOWN, UP = -0.02, 0.02
PATTERNS = {
    # RR and SpO2 falling together, pulse and temperature about steady: opioid-induced hypoventilation.
    "hypoventilation": [(Param.RR, slow(11.0, -0.02, 0.005)), (Param.SPO2, slow(93.0, -0.02, 0.005)),
                        (Param.PULSE, slow(62.0, -0.01, 0.01)), (Param.TEMP, slow(36.6, 0.0, 0.001))],
    "bradycardia": [(Param.PULSE, slow(48.0, -0.05, 0.01)), (Param.SBP, slow(102.0, -0.1, 0.02)),
                    (Param.RR, slow(13.0, -0.01, 0.005))],
    "hypothermia": [(Param.TEMP, slow(35.5, -0.004, 0.001)), (Param.PULSE, slow(48.0, -0.03, 0.01)),
                    (Param.RR, slow(11.5, -0.01, 0.005)), (Param.SBP, slow(105.0, -0.05, 0.02))],
    "sepsis": [(Param.PULSE, slow(100.0, 0.2, 0.05)), (Param.RR, slow(22.0, 0.02, 0.005)),
               (Param.SPO2, slow(94.0, -0.02, 0.005)), (Param.SBP, slow(100.0, -0.2, 0.05)),
               (Param.TEMP, slow(38.4, 0.004, 0.001))],
    # Sepsis starting from the middle of every band: rising pulse, RR and temperature from usual values.
    "early sepsis": [(Param.PULSE, slow(66.0, 0.2, 0.05)), (Param.RR, slow(14.0, 0.02, 0.005)),
                     (Param.SPO2, slow(97.0, -0.02, 0.005)), (Param.TEMP, slow(36.8, 0.004, 0.001))],
}


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_deterioration_toward_either_scoring_side_gives_a_high_drift_score(name: str) -> None:
    d = drift_score(PATTERNS[name])
    assert d is not None and d >= 3.5, (name, d)


@pytest.mark.parametrize("name", sorted(set(PATTERNS) - {"early sepsis"}))
def test_recovery_toward_the_zero_band_gives_a_low_drift_score(name: str) -> None:
    recovering = [(p, slow(s.level, -s.trend, math.sqrt(s.p11))) for p, s in PATTERNS[name]]
    d = drift_score(recovering)
    assert d is not None and d <= -2.0, (name, d)


def test_hypoventilation_no_longer_cancels_out() -> None:
    """The one-sided rule counted falling RR as improvement: RR down and SpO2 down summed to about nothing."""
    pattern = [(Param.RR, slow(11.0, -0.02, 0.005)), (Param.SPO2, slow(93.0, -0.02, 0.005)),
               (Param.PULSE, slow(70.0, 0.0, 0.01))]
    d = drift_score(pattern)
    assert d is not None and d == pytest.approx((4.0 + 4.0 + INSIDE_STILL) / math.sqrt(3))


def test_the_drift_rule_still_needs_three_vitals_with_a_slow_trend() -> None:
    assert drift_score(PATTERNS["bradycardia"][:2]) is None
    assert drift_score([*PATTERNS["bradycardia"][:2], (Param.TEMP, None)]) is None
    assert clinical_level(with_drift(None), PolicySettings()) is Level.NONE


# --- docs/news2.md: the tables the code uses -------------------------------------------------------------------

DOC = Path(__file__).resolve().parents[3] / "docs" / "news2.md"
NAMES = {Param.RR: "respiration rate", Param.SBP: "systolic BP", Param.PULSE: "pulse", Param.TEMP: "temperature"}


def _interval(lo: float, hi: float, s: int) -> str:
    left = "(-inf" if lo == -math.inf else f"[{lo:g}"
    return f"{left}, {hi:g}) {s}"


def render_intervals() -> str:
    rows = [(NAMES[p], t) for p, t in _BANDS.items()] + [
        ("SpO2 scale 1", _SPO2_SCALE1), ("SpO2 scale 2, air", _SPO2_SCALE2_AIR),
        ("SpO2 scale 2, oxygen or unknown", _SPO2_SCALE2_O2)]
    lines = ["| parameter | intervals (subscore) |", "|---|---|"]
    lines += [f"| {name} | {'; '.join(_interval(*i) for i in table)} |" for name, table in rows]
    return "\n".join(lines)


def render_signs() -> str:
    words = {1.0: "rising", -1.0: "falling"}
    lines = ["| vital | zero band | below it, worse is | inside it, worse is | at or above its top, worse is |",
             "|---|---|---|---|---|"]
    o2 = {**ZERO_BANDS, Param.SPO2: (88.0, 92.0)}
    bands = [(NAMES[p], p, ZERO_BANDS) for p in ZERO_BANDS] + [("SpO2 scale 2 on oxygen (or unknown)", Param.SPO2, o2)]
    for name, p, zb in bands:
        lo, hi = zb[p]
        below, above = drift_term(p, math.nextafter(lo, -math.inf), 1.0, zb), drift_term(p, hi, 1.0, zb)
        inside = drift_term(p, (lo + hi) / 2, 1.0, zb) == drift_term(p, (lo + hi) / 2, -1.0, zb)
        lines.append(f"| {name} | {lo:g} to < {hi:g} | {words[below]} | {'either way' if inside else '?'} | "
                     f"{words[above]} |")
    one = drift_term(Param.SPO2, 99.0, 1.0)
    assert one == drift_term(Param.SPO2, 60.0, 1.0)
    lines.append(f"| SpO2 scale 1, scale 2 on air | one-sided | {words[one]} | {words[one]} | {words[one]} |")
    return "\n".join(lines)


def _section(name: str) -> str:
    text = DOC.read_text()
    return text.split(f"<!-- {name}:begin -->\n", 1)[1].split(f"\n<!-- {name}:end -->", 1)[0]


def test_the_docs_show_the_interval_tables_the_code_uses() -> None:
    assert _section("estimate-intervals") == render_intervals(), "docs/news2.md: paste render_intervals()"


def test_the_docs_show_the_drift_signs_the_code_uses() -> None:
    assert _section("drift-signs") == render_signs(), "docs/news2.md: paste render_signs()"
