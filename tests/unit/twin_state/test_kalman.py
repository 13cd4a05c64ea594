"""The closed-form filter against filterpy's KalmanFilter, step by step, on real and simulated streams."""

from __future__ import annotations

import csv
import itertools
import math
import random
from pathlib import Path

import numpy as np
import pytest
from filterpy.common import Q_continuous_white_noise
from filterpy.kalman import KalmanFilter

from twin_state import kalman
from twin_state.catalogue import CATALOGUE, Metric

MIMIC = Path(__file__).resolve().parents[4] / "shared" / "data" / "mimic3wdb-s25047-numerics-per-minute.csv"
TOL = 1e-9


def reference(z0: float, r0: float, trend_var: float) -> KalmanFilter:
    kf = KalmanFilter(dim_x=2, dim_z=1)
    kf.x = np.array([[z0], [0.0]])
    kf.P = np.array([[r0, 0.0], [0.0, trend_var]])
    kf.H = np.array([[1.0, 0.0]])
    return kf


def run_side_by_side(
    samples: list[tuple[float, float, float]], q: float, trend_var: float, q_level: float = 0.0
) -> float:
    """samples: (dt_minutes, z, r). Returns the largest absolute disagreement over state and covariance."""
    _dt0, z0, r0 = samples[0]
    kf = reference(z0, r0, trend_var)
    ours = kalman.start(z0, r0, trend_var)
    worst = 0.0
    for dt, z, r in samples[1:]:
        Q = Q_continuous_white_noise(dim=2, dt=dt, spectral_density=q) + np.array([[q_level * dt, 0.0], [0.0, 0.0]])
        kf.predict(F=np.array([[1.0, dt], [0.0, 1.0]]), Q=Q)
        kf.update(np.array([[z]]), R=np.array([[r]]))
        ours = kalman.step(ours, dt, z, q, r, q_level)
        scale = max(1.0, abs(kf.x[0, 0]), abs(kf.P[0, 0]))
        diffs = (
            kf.x[0, 0] - ours.level, kf.x[1, 0] - ours.trend, kf.P[0, 0] - ours.p00,
            kf.P[0, 1] - ours.p01, kf.P[1, 0] - ours.p01, kf.P[1, 1] - ours.p11,
        )
        worst = max(worst, max(abs(d) for d in diffs) / scale)
    return worst


def test_agrees_with_filterpy_on_10000_irregular_simulated_steps() -> None:
    rng = random.Random(7)
    spec = CATALOGUE[Metric.HEART_RATE]
    samples = [(0.0, 70.0, spec.measurement_noise)]
    truth = 70.0
    for _ in range(10_000):
        dt = rng.choice([0.0, 1 / 60, 5 / 60, 0.5, 1.0, 7.0, 90.0])
        truth += rng.gauss(0, 0.5) * dt
        quality = rng.uniform(0.05, 1.0)
        samples.append((dt, truth + rng.gauss(0, 2), spec.measurement_noise / quality))
    assert run_side_by_side(samples, spec.process_noise, spec.initial_trend_var, spec.level_noise) < TOL


@pytest.mark.parametrize("column,metric", [("HR_bpm", Metric.HEART_RATE), ("SpO2_pct", Metric.SPO2),
                                           ("RESP_pm", Metric.RESP_RATE), ("NBPSys_mmHg", Metric.BP_SYSTOLIC)])
def test_agrees_with_filterpy_on_real_bedside_monitor_trace(column: str, metric: Metric) -> None:
    spec = CATALOGUE[metric]
    with MIMIC.open() as fh:
        rows = [(float(r["minute"]), float(r[column])) for r in csv.DictReader(fh)]
    # Keep the monitor's real gaps (nan) as irregular time steps; zeros are its own "no reading".
    kept = [(m, v) for m, v in rows if not math.isnan(v) and v > 0]
    assert len(kept) > 5
    samples = [(0.0, kept[0][1], spec.measurement_noise)]
    samples += [(m - pm, v, spec.measurement_noise) for (pm, _), (m, v) in itertools.pairwise(kept)]
    assert run_side_by_side(samples, spec.process_noise, spec.initial_trend_var) < TOL


def test_predict_zero_dt_is_identity_and_uncertainty_grows_with_time() -> None:
    s = kalman.start(80.0, 4.0, 1.0)
    assert kalman.predict(s, 0.0, 0.5) == s
    later = [kalman.predict(s, dt, 0.5).p00 for dt in (1.0, 5.0, 30.0)]
    assert later == sorted(later) and later[0] > s.p00


def test_update_pulls_level_toward_reading_in_proportion_to_confidence() -> None:
    s = kalman.predict(kalman.start(80.0, 4.0, 1.0), 1.0, 0.5)
    trusted = kalman.update(s, 100.0, 1.0)
    noisy = kalman.update(s, 100.0, 400.0)
    assert 80.0 < noisy.level < trusted.level < 100.0
    assert trusted.p00 < noisy.p00 < s.p00
