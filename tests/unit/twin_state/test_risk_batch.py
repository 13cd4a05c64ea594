"""``risk_many`` against the scalar ``risk``, its reference: every field of every result, on generated twins and on
a corpus of 10,000 simulated ones (floats to 1e-12; scores, ints and enums exactly)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulation.simulator import simulate
from twin_state import kalman, risk_batch
from twin_state.catalogue import CATALOGUE, Metric
from twin_state.news2 import Param, RiskBand
from twin_state.profile import HYPERCAPNIC, Profile
from twin_state.risk import (
    _BANDS,
    _FORECAST_BANDS,
    _FORECAST_SPO2_SCALE1,
    _FORECAST_SPO2_SCALE2_O2,
    _SPO2_SCALE2_O2,
    FILTERED_PARAMS,
    Risk,
    RiskSettings,
    risk,
)
from twin_state.risk_batch import erf, risk_many
from twin_state.twin import Position, Reading, Twin, new_twin, step

T0 = 1_763_942_400_000
TOL = 1e-12
VITALS = sorted(FILTERED_PARAMS.values())
SETTINGS = [
    RiskSettings(),
    RiskSettings(horizons_min=(15.0, 60.0), single_three=RiskBand.MEDIUM, slow_persistence_min=30.0),
    RiskSettings(horizons_min=(0.0, 30.0), stale_after_ms={Metric.HEART_RATE: 60_000}, acvpu_max_age_min=30.0,
                 manual_max_age_min=60.0),
]


def assert_same(want: Risk, got: Risk) -> None:
    assert got.now == want.now
    assert got.unconfirmed == want.unconfirmed
    assert list(got.p_reach) == list(want.p_reach)
    for key, p in want.p_reach.items():
        assert abs(got.p_reach[key] - p) <= TOL, (key, got.p_reach[key], p)
    assert list(got.p_param_3) == list(want.p_param_3)
    for param, p in want.p_param_3.items():
        assert abs(got.p_param_3[param] - p) <= TOL, (param, got.p_param_3[param], p)
    if want.drift is None:
        assert got.drift is None
    else:
        assert got.drift is not None and abs(got.drift - want.drift) <= TOL, (got.drift, want.drift)


def check(items: Sequence[tuple[Twin, Profile | None, int]], rs: RiskSettings) -> None:
    want = [risk(t, p, n, rs) for t, p, n in items]
    got = risk_many(items, rs)
    assert len(got) == len(want)
    for w, g in zip(want, got, strict=True):
        assert_same(w, g)


@pytest.fixture
def always_vectorised(monkeypatch: pytest.MonkeyPatch) -> None:
    """Even a batch of one through numpy (``risk_many`` hands tiny batches to ``risk`` otherwise)."""
    monkeypatch.setattr(risk_batch, "SCALAR_BELOW", 0)


# --- generated twins ---------------------------------------------------------------------------------------------


@st.composite
def twins(draw: st.DrawFn) -> Twin:
    twin = new_twin("p-1")
    t = T0
    for i in range(draw(st.integers(0, 40))):
        t += draw(st.sampled_from([0, 2_000, 15_000, 60_000, 900_000, 3_600_000]))
        metric = draw(st.sampled_from([*VITALS, Metric.ACTIVITY, Metric.CONSCIOUSNESS, Metric.O2_FLOW]))
        if metric is Metric.CONSCIOUSNESS:
            value = float(draw(st.integers(0, 4)))
        elif metric is Metric.O2_FLOW:
            value = draw(st.sampled_from([0.0, 2.0, 15.0]))
        else:
            lo, hi = CATALOGUE[metric].plausible
            value = draw(st.one_of(st.floats(lo, hi), st.sampled_from([lo, hi, 48.0, 85.0, 97.0])))
        device = draw(st.sampled_from(["wrist", "patch", "cuff", "nurse"]))
        twin, _ = step(twin, Reading("p-1", device, metric, value, t, i, draw(st.sampled_from([None, 0.3, 1.0]))),
                       Position(0, i))
    vitals = dict(twin.vitals)
    for metric in list(vitals):
        v = vitals[metric]
        how = draw(st.sampled_from(["as is", "mature", "athlete", "point", "no slow", "negative variance"]))
        if how == "mature":  # a personal baseline old enough to personalise, at the current level
            v = replace(v, baseline=v.filter.level, baseline_minutes=800.0)
        elif how == "athlete":  # a mature baseline that itself scores, below or above normal (pulse 48 or 95)
            usual = draw(st.sampled_from({
                Metric.HEART_RATE: [48.0, 95.0, 120.0], Metric.RESP_RATE: [10.0, 22.0],
                Metric.BP_SYSTOLIC: [105.0, 95.0], Metric.TEMPERATURE: [35.8, 38.5], Metric.SPO2: [93.0],
            }.get(metric, [v.baseline])))
            v = replace(v, baseline=usual, baseline_minutes=1000.0)
        elif how == "point":  # sd 0 at a time point of 0 (horizons 0 and 30 in SETTINGS[2])
            v = replace(v, filter=kalman.LevelTrend(v.filter.level, 0.0, 0.0, 0.0, 0.0),
                        slow=None if v.slow is None else replace(v.slow, p11=0.0))
        elif how == "no slow":
            v = replace(v, slow=None)
        elif how == "negative variance":
            v = replace(v, filter=replace(v.filter, p00=-1e-9, p01=0.0, p11=0.0))
        vitals[metric] = v
    return replace(twin, vitals=vitals)


profiles = st.one_of(
    st.none(),
    st.builds(
        lambda conditions, targets: Profile("p-1", "ward-7", T0, conditions=conditions, targets=targets),
        st.frozensets(st.sampled_from([HYPERCAPNIC, "copd", "beta_blocker"])),
        st.dictionaries(st.sampled_from(VITALS), st.sampled_from(
            [(88.0, 92.0), (50.0, 100.0), (10.0, 26.0), (35.0, 38.5), (95.0, 180.0), (20.0, 21.0)]), max_size=3),
    ),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(twins(), profiles, st.lists(st.integers(-120_000, 8 * 3_600_000), min_size=1, max_size=4)),
                min_size=1, max_size=6), st.sampled_from(SETTINGS), st.booleans())
def test_generated_twins_with_and_without_profiles(
    cases: list[tuple[Twin, Profile | None, list[int]]], rs: RiskSettings, tiny_batches_too: bool
) -> None:
    items = []
    for twin, profile, offsets in cases:
        newest = max([v.updated_at for v in twin.vitals.values()] + [T0])
        items += [(twin, profile, newest + d) for d in offsets]
    check(items, rs)
    if tiny_batches_too:
        for item in items[:3]:
            check([item], rs)


# --- a corpus of simulated twins ---------------------------------------------------------------------------------


def corpus() -> list[tuple[Twin, Profile | None, int]]:
    """10,000 twins: 250 simulated patients (half of them deteriorating) over four hours, each one's twin taken at
    40 moments, with profiles (targets; scale 2), nurses' entries, mature baselines and late evaluations by turns."""
    at = [T0 + (k + 1) * 6 * 60_000 for k in range(40)]
    twins_now: dict[str, Twin] = {}
    taken: list[tuple[Twin, int]] = []
    upto = 0
    for i, (_, r) in enumerate(simulate(250, 4 * 3600.0, rate=0.05, seed=17, start_ms=T0, deteriorating_share=0.5)):
        while upto < len(at) and r.measured_at >= at[upto]:
            taken += [(twins_now[pid], at[upto]) for pid in sorted(twins_now)]
            upto += 1
        twins_now[r.patient_id], _ = step(twins_now.get(r.patient_id) or new_twin(r.patient_id), r, Position(0, i))
    while upto < len(at):
        taken += [(twins_now[pid], at[upto]) for pid in sorted(twins_now)]
        upto += 1
    items: list[tuple[Twin, Profile | None, int]] = []
    for k, (twin, t) in enumerate(taken[:10_000]):
        pid = f"c-{k}"
        profile = [None, Profile(pid, "w", T0, targets={Metric.SPO2: (88.0, 92.0), Metric.HEART_RATE: (50.0, 110.0)}),
                   Profile(pid, "w", T0, conditions=frozenset({HYPERCAPNIC}))][k % 3]
        if k % 4 == 0:
            twin, _ = step(twin, Reading(twin.patient_id, "nurse", Metric.O2_FLOW, [0.0, 2.0][k % 8 // 4], t, 10**6),
                           Position(1, k))
        if k % 5 == 0:
            twin, _ = step(twin, Reading(twin.patient_id, "nurse-2", Metric.CONSCIOUSNESS, float(k % 10 // 5 * 2),
                                         t - 3_600_000, 10**6), Position(2, k))
        if k % 7 == 0:
            twin = replace(twin, vitals={m: replace(v, baseline_minutes=900.0) for m, v in twin.vitals.items()})
        items.append((twin, profile, t + [0, 5_000, 3 * 60_000, 8 * 60_000, 40 * 60_000, 2 * 3_600_000][k % 6]))
    return items


def test_a_corpus_of_ten_thousand_simulated_twins() -> None:
    items = corpus()
    assert len(items) == 10_000
    # What the corpus covers (so that the comparison means something).
    want = [risk(t, p, n) for t, p, n in items]
    assert sum(r.now.total >= 5 for r in want) > 100 and sum(0.05 < r.p(5, 60.0) < 0.95 for r in want) > 100
    assert sum(r.drift is not None for r in want) > 1000 and sum(bool(r.unconfirmed) for r in want) > 10
    assert sum(r.now.partial for r in want) > 1000
    got = risk_many(items)
    worst = 0.0
    for w, g in zip(want, got, strict=True):
        assert_same(w, g)
        worst = max([worst, *(abs(g.p_reach[k] - p) for k, p in w.p_reach.items()),
                     *(abs(g.p_param_3[k] - p) for k, p in w.p_param_3.items())])
    assert worst < 1e-14


# --- every band edge ------------------------------------------------------------------------------------------------

def _edges(param: Param) -> list[float]:
    tables = ([_FORECAST_SPO2_SCALE1, _FORECAST_SPO2_SCALE2_O2, _SPO2_SCALE2_O2] if param is Param.SPO2
              else [_FORECAST_BANDS[param], _BANDS[param]])
    return sorted({e for table in tables for lo, hi, _ in table for e in (lo, hi) if math.isfinite(e)})


EDGES = {m: _edges(p) for p, m in FILTERED_PARAMS.items()}


def edge_twins() -> list[tuple[Twin, Profile | None, int]]:
    """All five vitals at (or just either side of) each of their band edges, fast and slow filters alike, with and
    without spread, slow trends up and down, baselines that score, targets and scale 2, on air, oxygen or unknown."""
    base = new_twin("p-e")
    for i, m in enumerate(VITALS):
        base, _ = step(base, Reading("p-e", "d", m, CATALOGUE[m].plausible[0] + 1.0, T0, i), Position(0, i))
    on_o2, _ = step(base, Reading("p-e", "nurse", Metric.O2_FLOW, 2.0, T0, 99), Position(0, 99))
    on_air, _ = step(base, Reading("p-e", "nurse", Metric.O2_FLOW, 0.0, T0, 99), Position(0, 99))
    scale2 = Profile("p-e", "w", T0, conditions=frozenset({HYPERCAPNIC}))
    targeted = Profile("p-e", "w", T0, targets={Metric.SPO2: (88.0, 92.0), Metric.RESP_RATE: (11.5, 24.5)})
    items: list[tuple[Twin, Profile | None, int]] = []
    offsets = (-0.5, -0.05, 0.0, 0.05, 0.5)
    longest = max(len(e) for e in EDGES.values())
    for k in range(longest * len(offsets)):
        vitals = {}
        for j, (m, v) in enumerate(sorted(base.vitals.items())):
            edges = EDGES.get(m)
            if edges is None:
                vitals[m] = v
                continue
            level = edges[(k // len(offsets) + j) % len(edges)] + offsets[k % len(offsets)]
            spread = [0.0, 1e-16, 1e-6, 1.0][(k + j) % 4]  # sd 0, 1e-8 (not a point), 1e-3, 1
            slow = kalman.LevelTrend(level, [-0.01, 0.0, 0.02][(k + 2 * j) % 3], spread, 0.0, [1e-4, 0.0][k % 2])
            vitals[m] = replace(v, filter=kalman.LevelTrend(level, 0.0, spread, 0.0, spread), slow=slow,
                                baseline=level, baseline_minutes=[0.0, 900.0][(k + j) % 2])
        for twin in (base, on_o2, on_air):
            for profile in (None, scale2, targeted):
                items.append((replace(twin, vitals=vitals), profile, T0))
    return items


@pytest.mark.parametrize("rs", [RiskSettings(horizons_min=(0.0, 30.0)), RiskSettings(slow_persistence_min=30.0)])
def test_every_band_edge(always_vectorised: None, rs: RiskSettings) -> None:
    check(edge_twins(), rs)


# --- degenerate cases ----------------------------------------------------------------------------------------------


def simulated(n: int = 4) -> list[tuple[Twin, Profile | None, int]]:
    twins_now: dict[str, Twin] = {}
    for i, (_, r) in enumerate(simulate(n, 1800.0, rate=0.5, seed=3, start_ms=T0, deteriorating_share=0.5)):
        twins_now[r.patient_id], _ = step(twins_now.get(r.patient_id) or new_twin(r.patient_id), r, Position(0, i))
    return [(t, None, T0 + 1_800_000) for _, t in sorted(twins_now.items())]


def test_an_empty_batch(always_vectorised: None) -> None:
    assert risk_many([]) == []
    assert risk_many([], SETTINGS[1]) == []


def test_a_batch_of_one(always_vectorised: None) -> None:
    for item in simulated():
        check([item], RiskSettings())


def test_tiny_batches_go_through_the_scalar_code_and_agree() -> None:
    items = simulated()
    for n in range(risk_batch.SCALAR_BELOW + 2):
        check(items[:n], RiskSettings())


def test_all_vitals_missing(always_vectorised: None) -> None:
    nobody = new_twin("p-0")
    gone = simulated()[0][0]
    nurse_only, _ = step(nobody, Reading("p-0", "nurse", Metric.CONSCIOUSNESS, 3.0, T0, 0), Position(0, 0))
    items = [(nobody, None, T0), (gone, None, T0 + 10 * 3_600_000), (nurse_only, None, T0 + 60_000),
             (nurse_only, Profile("p-0", "w", T0, conditions=frozenset({HYPERCAPNIC})), T0)]
    check(items, RiskSettings())
    got = risk_many(items)
    assert all(r.p_param_3 == {} and r.drift is None for r in got)
    assert got[2].p(5, 60.0) == 0.0 and got[2].now.subscores[Param.ACVPU] == 3


def test_sd_zero_is_a_point_mass(always_vectorised: None) -> None:
    twin = simulated()[0][0]
    frozen = replace(twin, vitals={m: replace(v, filter=kalman.LevelTrend(v.filter.level, 0.0, 0.0, 0.0, 0.0))
                                   for m, v in twin.vitals.items()})
    now = max(v.updated_at for v in frozen.vitals.values())
    rs = RiskSettings(horizons_min=(0.0, 30.0))
    check([(frozen, None, now), (twin, None, now)], rs)
    point = risk_many([(frozen, None, now)], rs)[0]
    assert point.p_reach[(5, 0.0)] in (0.0, 1.0)


def test_erf_agrees_with_math_erf_to_an_ulp() -> None:
    rng = np.random.default_rng(7)
    xs = np.concatenate([np.linspace(-7.0, 7.0, 400_001), rng.normal(0.0, 3.0, 100_000),
                         np.array([0.0, -0.0, 6.0, -6.0, 5.999999, 1e-300, 40.0, -math.inf, math.inf])])
    want = np.array([math.erf(x) for x in xs.tolist()])
    got = erf(xs)
    assert np.max(np.abs(got - want)) <= 2.3e-16
    assert np.all(np.abs(got) <= 1.0)
    assert math.isnan(erf(np.array([math.nan]))[0])
