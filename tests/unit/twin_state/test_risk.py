"""Risk from a twin: NEWS2 now from estimates, and predicted probabilities checked against sampling."""

from __future__ import annotations

import random

import pytest

from twin_state.catalogue import Metric
from twin_state.forecast import Scenario, forecast_vital
from twin_state.news2 import Inputs, Param, score
from twin_state.profile import HYPERCAPNIC, Profile
from twin_state.risk import FILTERED_PARAMS, RiskSettings, news2_now, risk
from twin_state.twin import Position, Reading, Twin, new_twin, step

T0 = 1_763_942_400_000


def twin_from(series: dict[Metric, list[float]], every_s: float = 60.0, start: int = T0) -> Twin:
    """One reading per vital every ``every_s`` seconds with the given values (quality 1)."""
    twin = new_twin("p-1")
    n = 0
    length = max(len(v) for v in series.values())
    for i in range(length):
        for metric, values in series.items():
            if i < len(values):
                r = Reading("p-1", f"dev-{metric.value}", metric, values[i], start + int(i * every_s * 1000), i, 1.0)
                twin, _ = step(twin, r, Position(0, n))
                n += 1
    return twin


STABLE = {Metric.RESP_RATE: [15.0] * 120, Metric.SPO2: [97.0] * 120, Metric.BP_SYSTOLIC: [125.0] * 120,
          Metric.HEART_RATE: [72.0] * 120, Metric.TEMPERATURE: [36.8] * 120}  # two hours, a reading a minute


def rising(n: int = 30) -> dict[Metric, list[float]]:
    # Heading for sepsis: pulse +1.2/min, RR +0.3/min, temperature +0.03/min, SBP -1/min.
    return {Metric.RESP_RATE: [15 + 0.3 * i for i in range(n)], Metric.SPO2: [97.0] * n,
            Metric.BP_SYSTOLIC: [130 - 1.0 * i for i in range(n)], Metric.HEART_RATE: [75 + 1.2 * i for i in range(n)],
            Metric.TEMPERATURE: [37.0 + 0.03 * i for i in range(n)]}


def now_of(twin: Twin) -> int:
    return max(v.updated_at for v in twin.vitals.values())


def test_stable_patient_has_low_news2_and_low_predicted_risk() -> None:
    twin = twin_from(STABLE)
    r = risk(twin, None, now_of(twin))
    assert r.now.total == 0 and r.now.missing == () and {a.param for a in r.assumed} == {Param.ON_OXYGEN, Param.ACVPU}
    assert r.p(5, 30) < 0.05 and r.p(5, 60) < 0.05 and r.p(7, 60) < 0.005


def test_deteriorating_patient_is_predicted_before_the_score_crosses() -> None:
    twin = twin_from(rising())
    r = risk(twin, None, now_of(twin))
    assert r.now.total < 5
    assert r.p(5, 30) > 0.8 and r.p(5, 60) >= r.p(5, 30)
    # 110 now and rising 1.2/min: a pulse of 131 is far likelier than for a patient steady at the same 110.
    steady = twin_from({**rising(), Metric.HEART_RATE: [110.0] * 30})
    assert r.p_param_3[Param.PULSE] > 3 * risk(steady, None, now_of(steady)).p_param_3[Param.PULSE]


def test_news2_that_is_high_now_has_reached_every_threshold() -> None:
    twin = twin_from({**STABLE, Metric.RESP_RATE: [26.0] * 120, Metric.HEART_RATE: [135.0] * 120,
                      Metric.BP_SYSTOLIC: [88.0] * 120})
    r = risk(twin, None, now_of(twin))
    assert r.now.total >= 7 and r.p(5, 30) == 1.0 and r.p(7, 30) == 1.0


def test_manual_observations_count_while_recent_and_stale_vitals_are_missing() -> None:
    twin = twin_from(STABLE)
    t = now_of(twin)
    nurse = [Reading("p-1", "nurse", Metric.CONSCIOUSNESS, 2.0, t, 1),
             Reading("p-1", "nurse", Metric.O2_FLOW, 2.0, t, 2)]
    for i, r in enumerate(nurse):
        twin, _ = step(twin, r, Position(0, 10_000 + i))
    s = news2_now(twin, None, t)
    assert s.subscores[Param.ACVPU] == 3 and s.subscores[Param.ON_OXYGEN] == 2 and not s.partial
    settings = RiskSettings(manual_max_age_min=60)
    later = news2_now(twin, None, t + 61 * 60_000, settings)
    assert later.subscores[Param.ACVPU] == 3 and Param.ON_OXYGEN in later.missing  # "V" stands until replaced
    assert Param.PULSE in later.missing  # an hour without heart rate: stale, not guessed


def test_scale_2_and_targets_personalise_prediction_but_never_hide_news2_now() -> None:
    copd = {**STABLE, Metric.SPO2: [89.0] * 120}
    twin = twin_from(copd)
    t = now_of(twin)
    plain = risk(twin, None, t)
    assert plain.now.subscores[Param.SPO2] == 3
    scale2 = Profile("p-1", "w", 0, conditions=frozenset({HYPERCAPNIC}))
    assert risk(twin, scale2, t).now.subscores[Param.SPO2] == 0  # the chart's own scale 2

    fast = twin_from({**STABLE, Metric.HEART_RATE: [118.0] * 120})
    target = Profile("p-1", "w", 0, targets={Metric.HEART_RATE: (100.0, 125.0)})
    t2 = now_of(fast)
    assert risk(fast, target, t2).now.subscores[Param.PULSE] == 2  # NEWS2 now is the chart's
    assert risk(fast, target, t2).p_param_3[Param.PULSE] <= risk(fast, None, t2).p_param_3[Param.PULSE]


def test_a_mature_unusual_baseline_is_not_deterioration() -> None:
    athlete = twin_from({**STABLE, Metric.HEART_RATE: [46.0] * (13 * 60)}, every_s=60)
    t = now_of(athlete)
    assert athlete.vitals[Metric.HEART_RATE].baseline_minutes >= 12 * 60
    assert risk(athlete, None, t).now.subscores[Param.PULSE] == 1
    # The predicted model takes the usual point off: P(pulse scores 3) stays tiny and no aggregate risk.
    assert risk(athlete, None, t).p(5, 60) < 0.01


def test_predicted_probability_agrees_with_sampling_the_forecasts() -> None:
    twin = twin_from(rising(25))
    t = now_of(twin)
    r = risk(twin, None, t, RiskSettings(horizons_min=(15.0,)))
    rng = random.Random(3)
    forecasts = {p: forecast_vital(m, twin.vitals[m], t, 15.0, Scenario.DAMPED) for p, m in FILTERED_PARAMS.items()}
    n, hits = 20_000, 0
    for _ in range(n):
        sample = {p: rng.gauss(f.mean, f.sd) for p, f in forecasts.items()}
        s = score(Inputs(rr=sample[Param.RR], spo2=sample[Param.SPO2], sbp=sample[Param.SBP],
                         pulse=sample[Param.PULSE], temp=sample[Param.TEMP]))
        hits += s.total >= 5
    # The analytic value is the max over 5, 10 and 15 minutes; for a steadily rising patient that is at 15. Each
    # sample is a reading still to come, scored as the chart scores one (half up).
    assert r.p(5, 15.0) == pytest.approx(hits / n, abs=0.015)


def test_optimised_risk_agrees_with_the_reference_on_a_simulated_cohort() -> None:
    from simulation.simulator import simulate
    from tests.unit.twin_state.reference_risk import reference_risk
    from twin_state.profile import Profile

    profiles = [None, Profile("x", "w", 0, conditions=frozenset({HYPERCAPNIC})),
                Profile("x", "w", 0, targets={Metric.HEART_RATE: (95.0, 130.0), Metric.SPO2: (88.0, 92.0)})]
    twins: dict[str, Twin] = {}
    checked = 0
    settings = RiskSettings()
    for i, (_, r) in enumerate(simulate(12, 4 * 3600.0, rate=0.2, seed=77, start_ms=T0, deteriorating_share=0.6)):
        twin, _ = step(twins.get(r.patient_id) or new_twin(r.patient_id), r, Position(0, i))
        twins[r.patient_id] = twin
        if i % 97 == 0:
            profile = profiles[i % 3]
            fast = risk(twin, profile, r.measured_at, settings)
            p_reach, p3 = reference_risk(twin, profile, r.measured_at, settings)
            assert fast.p_reach.keys() == p_reach.keys()
            for k in p_reach:
                assert fast.p_reach[k] == pytest.approx(p_reach[k], abs=1e-12)
            assert fast.p_param_3 == pytest.approx(p3, abs=1e-12)
            checked += 1
    assert checked > 50
