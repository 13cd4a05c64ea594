"""Cost of one predict+update: filterpy's KalmanFilter (the reference) against twinmon's closed form, and of
a whole twin step and a risk evaluation. Prints figures; asserts nothing (timings are noisy here)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from filterpy.common import Q_continuous_white_noise
from filterpy.kalman import KalmanFilter

from simulation.simulator import simulate
from twin_state import kalman
from twin_state.risk import risk
from twin_state.twin import Position, new_twin, step


def per_call(fn: Callable[[], object], seconds: float = 1.0) -> float:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(100):
            fn()
        n += 100
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    kf = KalmanFilter(dim_x=2, dim_z=1)
    kf.x = np.array([[70.0], [0.0]])
    kf.H = np.array([[1.0, 0.0]])
    F = np.array([[1.0, 1 / 12], [0.0, 1.0]])
    Q = Q_continuous_white_noise(2, 1 / 12, 0.05)
    z = np.array([[71.0]])

    def filterpy_step() -> None:
        kf.predict(F=F, Q=Q)
        kf.update(z, R=4.0)

    s = kalman.start(70.0, 4.0, 1.0)

    def closed_form() -> None:
        kalman.step(s, 1 / 12, 71.0, 0.05, 4.0, 1.0)

    readings = [r for _, r in simulate(1, 3600, 1.0, 5, 1_763_942_400_000, 1.0)]
    twin = new_twin(readings[0].patient_id)
    for i, r in enumerate(readings[:-1]):
        twin = step(twin, r, Position(0, i))[0]
    last = readings[-1]

    fp = per_call(filterpy_step)
    cf = per_call(closed_form)
    tw = per_call(lambda: step(twin, last, Position(0, 10**6)))
    rk = per_call(lambda: risk(twin, None, last.measured_at))
    print("twinmon core micro-benchmark (one core, this machine, noisy)")
    print(f"  filterpy KalmanFilter predict+update   {fp:8.1f} us")
    print(f"  closed-form level+trend predict+update {cf:8.1f} us   ({fp / cf:.0f}x faster)")
    print(f"  whole twin step (gating, baseline, ...) {tw:8.1f} us")
    print(f"  risk: NEWS2 now + predicted (30, 60 min) {rk:7.1f} us   (run at most every 10 s per patient)")


if __name__ == "__main__":
    main()
