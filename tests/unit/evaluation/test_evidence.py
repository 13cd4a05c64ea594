"""The evidence report's parts: NEWS2 on arrays equals the chart, the charted schedule's boundaries, smoothed
NEWS2, exact and bootstrap intervals, the calibration fit and its figures, and a small cohort end to end."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from alerts.config import AlertingConfig, load_config
from evaluation import evidence as ev
from twin_state.catalogue import ACVPU
from twin_state.news2 import Inputs, score

T0 = 1_763_942_400_000


def test_news2_arrays_equal_the_chart_on_random_and_edge_values() -> None:
    rng = random.Random(3)
    edges = {0: [8, 8.5, 9, 11, 11.49, 11.5, 20, 20.5, 21, 24, 24.5, 25], 1: [91, 91.5, 92, 93, 93.5, 94, 95, 95.5, 96],
             2: [90, 90.5, 91, 100, 100.5, 101, 110, 110.5, 111, 219, 219.5, 220],
             3: [40, 40.5, 41, 50, 50.5, 51, 90, 90.5, 91, 110, 111, 130, 130.5, 131],
             4: [35.0, 35.05, 35.1, 36.0, 36.05, 36.1, 38.0, 38.05, 38.1, 39.0, 39.05, 39.1]}
    rows = []
    for _ in range(3000):
        row = [rng.uniform(2, 40), rng.uniform(80, 100), rng.uniform(60, 240), rng.uniform(25, 170),
               rng.uniform(33, 41)]
        col = rng.randrange(5)
        row[col] = rng.choice(edges[col])
        if rng.random() < 0.05:
            row[rng.randrange(5)] = float("nan")
        rows.append(row)
    values = np.array(rows)
    acvpu = np.array([rng.choice((0, 0, 0, 2)) for _ in rows], dtype=np.int64)
    got = ev.news2_arrays(values, acvpu)

    def one(r: list[float], a: int) -> int:
        def v(i: int) -> float | None:
            return None if np.isnan(r[i]) else r[i]
        return score(Inputs(rr=v(0), spo2=v(1), on_oxygen=False, sbp=v(2), pulse=v(3), temp=v(4),
                            acvpu=ACVPU[a])).total

    assert got.tolist() == [one(r, int(a)) for r, a in zip(rows, acvpu, strict=True)]


@pytest.mark.parametrize(("total", "minutes"), [(0, 720.0), (1, 240.0), (4, 240.0), (5, 60.0), (6, 60.0), (7, 1.0),
                                                (12, 1.0)])
def test_charted_frequency_at_every_band_boundary(total: int, minutes: float) -> None:
    assert ev.charted_interval_min(total) == minutes
    assert ev.charted_interval_min(total, low_h=6.0) == (360.0 if 1 <= total <= 4 else minutes)


@pytest.mark.parametrize("total", [0, 1, 3, 4, 5, 6, 7])
def test_a_single_parameter_scoring_3_means_at_least_hourly(total: int) -> None:
    assert ev.charted_interval_min(total, single_three=True) == (1.0 if total >= 7 else 60.0)
    assert ev.charted_interval_min(total, 6.0, single_three=True) == ev.charted_interval_min(total, 4.0, True)


def test_the_charted_schedule_is_hourly_while_one_parameter_scores_3() -> None:
    three = [16.0, 91.0, 125.0, 70.0, 37.0]  # SpO2 91 scores 3: total 3
    n = 2880
    truth = np.array([NORMAL] * 480 + [three] * (n - 480))
    total, single = ev.news2_parts(truth, np.zeros(n, dtype=np.int64))
    assert (total[480:] == 3).all() and (single[480:] == 3).all() and (single[:480] == 0).all()
    p = _patient(truth, onset_min=None)
    times, values = ev.charted_times(p)
    assert all(v == 3 for t, v in zip(times, values, strict=True) if t >= 480)
    after = [t for t in times if t >= 480 + 720]
    assert np.diff(after).tolist() == [60] * (len(after) - 1) and len(after) >= 3
    times4, _ = ev.charted_times(p, single_three_hourly=False)
    assert set(np.diff([t for t in times4 if t >= 480 + 720]).tolist()) == {240}
    # Consciousness other than alert is a single 3 too.
    acvpu = np.ones(n, dtype=np.int64)
    assert (ev.news2_parts(np.array([NORMAL] * n), acvpu)[1] == 3).all()


def _patient(truth: np.ndarray, onset_min: int | None, alerts: tuple[int, ...] = (), key: str = "1:sim-000000",
             sums: np.ndarray | None = None, counts: np.ndarray | None = None) -> ev.PatientData:
    n = len(truth)
    return ev.PatientData(key=key, phenotype="sepsis" if onset_min is not None else "stable", shape="ramp",
                          treated=False, mimics=(), start_ms=T0, end_ms=T0 + n * 60_000,
                          onset_ms=None if onset_min is None else T0 + onset_min * 60_000,
                          alerts=tuple(T0 + a * 60_000 for a in alerts), raw_reach_ms=None, truth=truth,
                          acvpu=np.zeros(n, dtype=np.int64),
                          sums=np.zeros((n, 5)) if sums is None else sums,
                          counts=np.zeros((n, 5)) if counts is None else counts, samples=np.zeros((0, 4)))


NORMAL = [16.0, 98.0, 125.0, 70.0, 37.0]  # scores 0
FIVE = [22.0, 93.0, 125.0, 70.0, 37.0]  # 2 + 2 = 4 ... plus pulse 95 below: 5
FIVE[3] = 95.0


def test_charted_schedule_follows_the_score_and_reaches_5_at_the_next_round() -> None:
    n = 1800
    truth = np.array([NORMAL] * 600 + [FIVE] * (n - 600))
    p = _patient(truth, onset_min=600)
    times, values = ev.charted_times(p)
    assert 0 <= times[0] < 720
    gaps = np.diff(times)
    assert all(g in (719, 720, 721) for g, s in zip(gaps, values, strict=False) if s == 0)  # 12 h at score 0
    reach, false = ev.charted_reach(p)
    assert false == 0
    first_after = next(t for t in times if t >= 600)
    assert reach == T0 + first_after * 60_000
    assert (reach - T0) / 60_000 - 600 < 720  # within one 12-hour round of the onset


def test_smoothed_news2_waits_for_the_window_and_ignores_what_is_implausible() -> None:
    n = 60
    sums, counts = np.zeros((n, 5)), np.zeros((n, 5))
    for k in range(n):
        row = FIVE if k >= 30 else NORMAL
        sums[k], counts[k] = row, 1
    p = _patient(np.array([NORMAL] * n), onset_min=None, sums=sums, counts=counts)
    assert ev.smoothed_alerts(p, 1) == [T0 + 31 * 60_000]
    # A 10-minute mean crosses later: pulse 70 -> 95 and RR 16 -> 22 need most of the window.
    later = ev.smoothed_alerts(p, 10)
    assert len(later) == 1 and later[0] > T0 + 31 * 60_000


def test_exact_interval_of_26_of_26_has_the_lower_bound_the_issue_names() -> None:
    assert ev.exact_interval(26, 26) == [0.868, 1.0]
    assert ev.exact_interval(0, 10) == [0.0, 0.308]


def test_summary_counts_leads_censoring_and_false_alerts() -> None:
    n = 1440
    worse = _patient(np.array([NORMAL] * n), 600, alerts=(100, 620), key="1:a")
    missed = _patient(np.array([NORMAL] * n), 700, alerts=(), key="1:b")
    stable = _patient(np.array([NORMAL] * n), None, alerts=(50, 60), key="1:c")
    reach = {"1:a": T0 + 700 * 60_000, "1:b": None, "1:c": None}
    s = ev.summary([worse, missed, stable], {p.key: list(p.alerts) for p in (worse, missed, stable)}, reach, 200)
    assert (s["episodes"], s["detected"], s["false_alerts"]) == (2, 1, 3)
    assert s["median_lead_min"] == 80.0
    assert s["lead_censored_at_end"] == 0
    days = 600 / 1440 + 700 / 1440 + 1.0
    assert s["false_per_patient_day"] == round(3 / days, 3)
    censored = ev.summary([worse], {"1:a": [T0 + 620 * 60_000]}, {"1:a": None}, 200)
    assert censored["median_lead_min"] == 1440 - 620 and censored["lead_censored_at_end"] == 1


def test_isotonic_fit_recovers_a_miscalibrated_score_and_the_figures_say_so() -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 1, 40_000)
    truth = np.sqrt(p)  # the raw score is too low everywhere
    y = (rng.uniform(0, 1, len(p)) < truth).astype(float)
    cal = ev.fit_isotonic(p, y, "test")
    assert list(cal.raw) == sorted(cal.raw) and list(cal.calibrated) == sorted(cal.calibrated)
    q = ev.apply_calibration(cal, p)
    assert ev.ece(p, y) > 0.15
    assert ev.ece(q, y) < 0.02
    slope = ev.calibration_slope(q, y)
    assert slope is not None and 0.9 < slope[1] < 1.1
    perfect = (rng.uniform(0, 1, len(p)) < p).astype(float)
    fitted = ev.calibration_slope(p, perfect)
    assert fitted is not None and abs(fitted[0]) < 0.1 and 0.9 < fitted[1] < 1.1


def test_calibration_samples_look_an_hour_ahead_and_skip_what_cannot_be_judged() -> None:
    t = T0 + np.arange(0, 200) * 30_000  # 100 minutes of sweeps
    now = np.zeros(200)
    now[150] = 5  # at 75 min
    samples = np.column_stack([t, now, np.full(200, 0.3), np.zeros(200)])
    p = _patient(np.array([NORMAL] * 100), None)
    p = ev.PatientData(**{**{f: getattr(p, f) for f in p.__dataclass_fields__}, "samples": samples})
    s = ev.calibration_samples([p])
    # Samples every 2 min whose hour ahead is inside the 99.5 min of sweeps: t = 0, 2, ..., 38 min (20 of them).
    assert len(s.p) == 20
    # The event at 75 min is within 60 min of the samples from 16 min on.
    assert s.y.tolist() == [0.0] * 8 + [1.0] * 12


def test_a_small_cohort_end_to_end_writes_a_report_and_a_policy_section(tmp_path: Path) -> None:
    result, cal = ev.evaluate_evidence("phenotypes", 4, 2.0, [11], [21], 0.5, reps=100)
    paths = ev.write_evidence_report(result, tmp_path, "test")
    assert {p.name for p in paths} >= {"evidence.md", "evidence.json", "calibration.toml", "reliability.png"}
    policy = tmp_path / "policy.toml"
    policy.write_text((tmp_path / "calibration.toml").read_text())
    _, config = load_config(policy)
    assert config.calibration == cal
    assert AlertingConfig().calibration is None
