"""The slow trend (hours-long drift under minute-scale physiology): its filter, its place in the forecast, its
storage, its setting, and the feasibility diagnostic that motivated it."""

from __future__ import annotations

import math
import random

import msgpack
import pytest

from alerts.policy import Level, PolicySettings, clinical_level
from evaluation.cohort import ConfigError, parse_config
from evaluation.feasibility import KS, REQUIRED_Z, episode
from simulation.simulator import _make_patient
from twin_state import codec, kalman
from twin_state.catalogue import SLOW, SLOW_CORRELATION_MIN, TREND_PERSISTENCE_MIN, Metric
from twin_state.errors import CorruptTwin
from twin_state.forecast import Scenario, damped_moments, forecast_vital
from twin_state.news2 import Inputs, Param, score
from twin_state.risk import Risk, drift_score, risk
from twin_state.twin import Position, Reading, Twin, new_twin, slow_step, step

T0 = 1_763_942_400_000


def temps(values: list[float], every_s: float = 30.0) -> Twin:
    twin = new_twin("p-1")
    for i, v in enumerate(values):
        r = Reading("p-1", "patch", Metric.TEMPERATURE, v, T0 + int(i * every_s * 1000), i, 1.0)
        twin, _ = step(twin, r, Position(0, i))
    return twin


def slow_z(twin: Twin, metric: Metric = Metric.TEMPERATURE) -> float:
    slow = twin.vitals[metric].slow
    assert slow is not None
    return slow.trend / math.sqrt(slow.p11)


def test_only_scored_vitals_have_a_slow_trend_and_it_starts_at_the_first_reading() -> None:
    assert slow_step(Metric.ACTIVITY, None, 0.0, 30.0, 25.0) is None
    assert slow_step(Metric.BP_DIASTOLIC, None, 0.0, 70.0, 16.0) is None
    spec = SLOW[Metric.HEART_RATE]
    first = slow_step(Metric.HEART_RATE, None, 0.0, 72.0, 4.0)
    assert first == kalman.LevelTrend(72.0, 0.0, 4.0 + spec.natural, 0.0, spec.initial_trend_var)
    twin = temps([37.0])
    assert twin.vitals[Metric.TEMPERATURE].slow is not None


def test_crowded_readings_tell_the_slow_filter_no_more_than_physiology_allows() -> None:
    start = slow_step(Metric.HEART_RATE, None, 0.0, 72.0, 4.0)
    spread = slow_step(Metric.HEART_RATE, start, SLOW_CORRELATION_MIN, 80.0, 4.0)
    crowded = slow_step(Metric.HEART_RATE, start, SLOW_CORRELATION_MIN / 10, 80.0, 4.0)
    assert spread is not None and crowded is not None
    assert crowded.level < spread.level  # the same surprise moves it less when it comes soon after the last
    # Below the floor (a hundredth of the correlation time, two devices at once) the weight stops shrinking.
    floor = SLOW_CORRELATION_MIN / 100
    assert slow_step(Metric.HEART_RATE, start, floor / 2, 80.0, 4.0) == kalman.step(
        start, floor / 2, 80.0, SLOW[Metric.HEART_RATE].q, 4.0 + SLOW[Metric.HEART_RATE].natural * 100)


def test_an_hour_of_fever_rising_is_a_clear_slow_trend_and_a_steady_temperature_is_not() -> None:
    rng = random.Random(7)
    rising = temps([round(36.8 + 0.02 * i / 2 + rng.gauss(0, 0.1), 1) for i in range(120)])
    steady = temps([round(36.8 + rng.gauss(0, 0.1), 1) for i in range(120)])
    slow = rising.vitals[Metric.TEMPERATURE].slow
    assert slow is not None and slow.trend == pytest.approx(0.02, rel=0.5)
    assert slow_z(rising) > 4.0
    assert abs(slow_z(steady)) < 2.0


def test_slow_trend_persistence_at_or_below_the_fast_ones_leaves_the_forecast_as_it_was() -> None:
    now = kalman.LevelTrend(37.0, 0.001, 0.01, 0.0, 1e-4)
    slow = kalman.LevelTrend(37.0, 0.02, 0.02, 0.0, 1e-6)
    without = damped_moments(now, None, 60.0, 0.0015, 60.0)
    assert damped_moments(now, slow, 60.0, 0.0015, 0.0) == without
    assert damped_moments(now, slow, 60.0, 0.0015, TREND_PERSISTENCE_MIN) == without
    mean, var = damped_moments(now, slow, 60.0, 0.0015, 60.0)
    extra = 60.0 * -math.expm1(-1.0) - TREND_PERSISTENCE_MIN * -math.expm1(-60.0 / TREND_PERSISTENCE_MIN)
    assert mean == pytest.approx(without[0] + extra * 0.02)
    assert var == pytest.approx(without[1] + extra * extra * 1e-6)


def test_the_damped_forecast_carries_a_slow_drift_when_asked_to() -> None:
    twin = temps([round(36.8 + 0.01 * i, 2) for i in range(120)])  # +0.02 C/min for an hour
    v = twin.vitals[Metric.TEMPERATURE]
    plain = forecast_vital(Metric.TEMPERATURE, v, v.updated_at, 60.0, Scenario.DAMPED, slow_persistence_min=0.0)
    slow = forecast_vital(Metric.TEMPERATURE, v, v.updated_at, 60.0, Scenario.DAMPED, slow_persistence_min=60.0)
    assert slow.mean > plain.mean + 0.5


def test_codec_stores_the_slow_trend_and_still_reads_twins_stored_without_it() -> None:
    twin = temps([36.8, 36.9, 37.0])
    assert codec.unpack(codec.pack(twin)) == twin
    assert codec.from_dict(codec.to_dict(twin)) == twin
    # A twin stored without slow fields (format 2, see test_twin_codec) reads with no slow trend; its next reading
    # starts one.
    data = msgpack.unpackb(codec.pack(twin), raw=False)
    data[5] = [v[:17] for v in data[5]]
    old = codec.unpack(msgpack.packb(data, use_bin_type=True))
    assert old.vitals[Metric.TEMPERATURE].slow is None
    assert old.vitals[Metric.TEMPERATURE].filter == twin.vitals[Metric.TEMPERATURE].filter
    r = Reading("p-1", "patch", Metric.TEMPERATURE, 37.1, T0 + 90_000, 3, 1.0)
    assert step(old, r, Position(0, 3))[0].vitals[Metric.TEMPERATURE].slow is not None
    as_dict = codec.to_dict(twin)
    legacy = {**as_dict, "format": 2,
              "vitals": {m: {k: x for k, x in v.items() if k != "slow"} for m, v in as_dict["vitals"].items()}}
    assert codec.from_dict(legacy).vitals[Metric.TEMPERATURE].slow is None


def test_codec_refuses_a_damaged_slow_trend() -> None:
    data = msgpack.unpackb(codec.pack(temps([36.8])), raw=False)
    data[5] = [v[:19] for v in data[5]]
    with pytest.raises(CorruptTwin, match="slow trend"):
        codec.unpack(msgpack.packb(data, use_bin_type=True))


def test_slow_persistence_is_a_risk_setting_with_a_checked_range() -> None:
    _, e = parse_config({"risk": {"slow_persistence_min": 0}}, "a.toml")
    assert e.risk.slow_persistence_min == 0.0
    _, e = parse_config({"risk": {"slow_persistence_min": 45.5}}, "a.toml")
    assert e.risk.slow_persistence_min == 45.5
    for bad in (-1, "long", True):
        with pytest.raises(ConfigError, match="slow_persistence_min"):
            parse_config({"risk": {"slow_persistence_min": bad}}, "a.toml")


def deteriorating_index(seed: int, duration_s: float) -> int:
    return next(i for i in range(100) if _make_patient(i, seed, duration_s, 0.3).onset_s is not None)


def test_feasibility_measures_the_deteriorations_own_movement_from_the_onset() -> None:
    duration = 6 * 3600.0
    i = deteriorating_index(1, duration)
    ep = episode(i, 1, duration, 0.3)
    hr = 0  # VITALS order
    assert ep.drift_at[KS[0]][hr] > 0  # heart rate up, saturation and pressure down
    # A linear ramp: the movement grows in proportion to the time since the onset, and the window's mean is half.
    ratio = KS[-1] / KS[0]
    assert ep.drift_at[KS[-1]] == pytest.approx(ep.drift_at[KS[0]] * ratio, rel=1e-6)
    assert ep.drift[KS[-1]] == pytest.approx(ep.drift_at[KS[-1]] / 2, rel=0.05)
    assert pytest.approx(3.64, abs=0.01) == REQUIRED_Z


def flat(trend: float, sd: float) -> kalman.LevelTrend:
    return kalman.LevelTrend(0.0, trend, 1.0, 0.0, sd * sd)


def test_drift_score_counts_the_direction_news2_charts_as_worse_and_needs_three_vitals() -> None:
    # Levels of 0 are below the middle of every two-sided zero band (test_news2_safety has the sign rule): there
    # falling is deterioration; a one-sided saturation deteriorates falling wherever it is.
    worse = [(Param.PULSE, flat(-0.2, 0.1)), (Param.RR, flat(-0.02, 0.01)), (Param.SPO2, flat(-0.02, 0.01))]
    assert drift_score(worse) == pytest.approx(6.0 / math.sqrt(3))
    better = [(Param.PULSE, flat(0.2, 0.1)), (Param.RR, flat(0.02, 0.01)), (Param.SPO2, flat(0.02, 0.01))]
    assert drift_score(better) == pytest.approx(-6.0 / math.sqrt(3))
    assert drift_score(worse[:2]) is None
    assert drift_score([*worse[:2], (Param.SBP, None)]) is None  # a vital without a slow trend does not count
    sbp_down = [*worse, (Param.SBP, flat(-0.2, 0.1)), (Param.TEMP, flat(-0.002, 0.001))]
    assert drift_score(sbp_down) == pytest.approx(10.0 / math.sqrt(5))


def with_drift(drift: float | None) -> Risk:
    return Risk(score(Inputs(rr=16, spo2=97, sbp=120, pulse=70, temp=37.0)), {(5, 60.0): 0.0, (7, 60.0): 0.0}, {},
                drift)


def test_the_drift_rule_raises_medium_at_its_threshold_and_only_when_set() -> None:
    on = PolicySettings(drift_medium=3.0)
    assert clinical_level(with_drift(3.0), on) is Level.MEDIUM
    assert clinical_level(with_drift(2.99), on) is Level.NONE
    assert clinical_level(with_drift(None), on) is Level.NONE
    assert clinical_level(with_drift(50.0), PolicySettings(drift_medium=0.0)) is Level.NONE
    # It never lowers what NEWS2 says now.
    high_now = Risk(score(Inputs(rr=26, spo2=91, sbp=120, pulse=70, temp=37.0)), {(5, 60.0): 1.0, (7, 60.0): 1.0},
                    {}, 5.0)
    assert clinical_level(high_now, on) is Level.HIGH


def test_drift_medium_is_a_policy_setting_with_a_checked_range() -> None:
    _, e = parse_config({"policy": {"drift_medium": 3.5}}, "a.toml")
    assert e.policy.drift_medium == 3.5
    with pytest.raises(ConfigError, match="drift_medium"):
        parse_config({"policy": {"drift_medium": -1.0}}, "a.toml")


def test_risk_reports_the_drift_of_a_twin_whose_vitals_drift_together() -> None:
    twin = new_twin("p-1")
    drifting = {Metric.HEART_RATE: (75.0, 0.3), Metric.RESP_RATE: (15.0, 0.08), Metric.SPO2: (97.0, -0.06),
                Metric.TEMPERATURE: (36.8, 0.015)}
    rng = random.Random(3)
    i = 0
    for minute in range(90):
        for metric, (start, slope) in drifting.items():
            noise = {Metric.HEART_RATE: 2.0, Metric.RESP_RATE: 1.0, Metric.SPO2: 0.8, Metric.TEMPERATURE: 0.08}[metric]
            value = round(start + slope * minute + rng.gauss(0, noise), 1)
            twin, _ = step(twin, Reading("p-1", "d", metric, value, T0 + minute * 60_000, i, 1.0), Position(0, i))
            i += 1
    r = risk(twin, None, T0 + 89 * 60_000)
    assert r.drift is not None and r.drift > 5.0
