from __future__ import annotations

import numpy as np
import pytest
from filterpy.common import Q_continuous_white_noise

from twin_state.catalogue import CATALOGUE, Metric
from twin_state.forecast import Scenario, forecast_twin, forecast_vital
from twin_state.twin import Position, Reading, Twin, new_twin, step

T0 = 1_763_942_400_000


def rising_twin() -> Twin:
    twin = new_twin("p-1")
    for i in range(120):  # +1 bpm/min for 10 minutes, one reading per 5 s
        r = Reading("p-1", "w", Metric.HEART_RATE, 70 + i / 12, T0 + i * 5000, i, 1.0)
        twin, _ = step(twin, r, Position(0, i))
    return twin


def test_trend_continues_is_the_kalman_prediction() -> None:
    twin = rising_twin()
    v = twin.vitals[Metric.HEART_RATE]
    now = v.updated_at + 120_000
    f = forecast_vital(Metric.HEART_RATE, v, now, 30.0)
    # Same as filterpy's predict over 2 + 30 minutes from the stored state.
    spec = CATALOGUE[Metric.HEART_RATE]
    dt, q = 32.0, spec.process_noise
    x = np.array([v.filter.level, v.filter.trend])
    P = np.array([[v.filter.p00, v.filter.p01], [v.filter.p01, v.filter.p11]])
    F = np.array([[1.0, dt], [0.0, 1.0]])
    Q = Q_continuous_white_noise(2, dt, q) + np.array([[spec.level_noise * dt, 0.0], [0.0, 0.0]])
    x2, P2 = F @ x, F @ P @ F.T + Q
    assert f.mean == pytest.approx(x2[0], abs=1e-9) and f.var == pytest.approx(P2[0, 0], abs=1e-9)
    assert f.mean == pytest.approx(80 + 32, abs=3)


def test_trend_stops_holds_the_level_and_is_less_certain_the_further_it_looks() -> None:
    twin = rising_twin()
    now = twin.vitals[Metric.HEART_RATE].updated_at
    f15, f60 = (forecast_twin(twin, now, h, Scenario.TREND_STOPS)[0] for h in (15.0, 60.0))
    assert f15.mean == f60.mean == pytest.approx(80, abs=1.5)
    assert f15.sd < f60.sd and f60.low95 < f60.mean < f60.high95
    cont = forecast_twin(twin, now, 60.0, Scenario.TREND_CONTINUES)[0]
    assert cont.mean > f60.mean + 40


def test_negative_horizon_is_refused() -> None:
    twin = rising_twin()
    with pytest.raises(ValueError, match="horizon"):
        forecast_twin(twin, T0, -1.0)
