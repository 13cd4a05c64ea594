"""Where each vital is heading: the filter's predictive distribution at a horizon, under a scenario.

* ``trend-continues``: the Kalman prediction itself (level + trend x horizon; variance from the model).
* ``trend-stops``: the level is held where it is now; the variance still grows by what the model allows a
  new trend to do over the horizon (``q h^3 / 3``), so holding is not mistaken for certainty.
* ``damped`` (what risk prediction uses): the trend fades with time constant ``TREND_PERSISTENCE_MIN``, so it
  moves the mean by at most ``trend x tau``; the current state's uncertainty is carried through the same
  damping, and the level diffuses by ``FORECAST_DIFFUSION`` per minute. The filter's own process noise is
  tuned to track minute-to-minute change and, extrapolated over an hour (it grows as ``h^3``), would make
  every patient look as likely to crash as to recover. With a slow trend persistence ``S > tau``
  (``catalogue.SLOW_PERSISTENCE_MIN``) the vital's slow trend (``VitalState.slow``, hours-long drift) carries
  on where the fast one has faded: it adds ``slow_trend x (S (1 - e^(-h/S)) - tau (1 - e^(-h/tau)))`` to the
  mean and that factor squared times the slow trend's variance to the variance (``damped_moments``).

Both project the stored state to ``now`` first: a twin that has not heard from a sensor for ten minutes
forecasts from ten minutes ago, with the uncertainty that implies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from twin_state import kalman
from twin_state.catalogue import (
    CATALOGUE,
    FORECAST_DIFFUSION,
    SLOW,
    SLOW_PERSISTENCE_MIN,
    TREND_PERSISTENCE_MIN,
    Metric,
)
from twin_state.twin import MS_PER_MIN, Twin, VitalState

Z95 = 1.959963984540054


class Scenario(StrEnum):
    TREND_CONTINUES = "trend-continues"
    TREND_STOPS = "trend-stops"
    DAMPED = "damped"


@dataclass(frozen=True, slots=True)
class Forecast:
    metric: Metric
    horizon_min: float
    mean: float
    var: float

    @property
    def sd(self) -> float:
        return math.sqrt(max(self.var, 0.0))

    @property
    def low95(self) -> float:
        return self.mean - Z95 * self.sd

    @property
    def high95(self) -> float:
        return self.mean + Z95 * self.sd


def _persisted(t: float, tau: float) -> float:
    """How far a trend fading with time constant ``tau`` moves the value in ``t`` minutes, per unit of trend."""
    return tau * -math.expm1(-t / tau) if tau > 0 else 0.0


def slow_now(metric: Metric, vital: VitalState, since_min: float) -> kalman.LevelTrend | None:
    """The vital's slow filter projected ``since_min`` minutes on (None when it has none)."""
    spec = SLOW.get(metric)
    if vital.slow is None or spec is None:
        return None
    return kalman.predict(vital.slow, since_min, spec.q)


def damped_moments(now: kalman.LevelTrend, slow: kalman.LevelTrend | None, t: float, diffusion: float,
                   slow_persistence_min: float) -> tuple[float, float]:
    """Mean and variance of the ``damped`` forecast ``t`` minutes after the state ``now`` (see the module docstring)."""
    phi = _persisted(t, TREND_PERSISTENCE_MIN)
    mean = now.level + phi * now.trend
    var = now.p00 + 2.0 * phi * now.p01 + phi * phi * now.p11 + diffusion * t
    if slow is not None and slow_persistence_min > TREND_PERSISTENCE_MIN:
        extra = _persisted(t, slow_persistence_min) - phi
        mean += extra * slow.trend
        var += extra * extra * slow.p11
    return mean, var


def forecast_vital(
    metric: Metric, vital: VitalState, now_ms: int, horizon_min: float,
    scenario: Scenario = Scenario.TREND_CONTINUES, slow_persistence_min: float = SLOW_PERSISTENCE_MIN,
) -> Forecast:
    if horizon_min < 0:
        raise ValueError("horizon must be >= 0 minutes")
    spec = CATALOGUE[metric]
    q, q_level = spec.process_noise, spec.level_noise
    since = max(now_ms - vital.updated_at, 0) / MS_PER_MIN
    now = kalman.predict(vital.filter, since, q, q_level)
    if scenario is Scenario.TREND_CONTINUES:
        ahead = kalman.predict(now, horizon_min, q, q_level)
        return Forecast(metric, horizon_min, ahead.level, ahead.p00)
    if scenario is Scenario.DAMPED:
        mean, var = damped_moments(now, slow_now(metric, vital, since), horizon_min, FORECAST_DIFFUSION[metric],
                                   slow_persistence_min)
        return Forecast(metric, horizon_min, mean, var)
    return Forecast(metric, horizon_min, now.level, now.p00 + q * horizon_min**3 / 3.0 + q_level * horizon_min)


def forecast_twin(
    twin: Twin, now_ms: int, horizon_min: float, scenario: Scenario = Scenario.TREND_CONTINUES
) -> list[Forecast]:
    return [
        forecast_vital(m, twin.vitals[m], now_ms, horizon_min, scenario) for m in Metric if m in twin.vitals
    ]
