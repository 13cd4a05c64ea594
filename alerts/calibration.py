"""A calibration of the predicted risk: the twin's score for "NEWS2 reaches 5 within 60 min" mapped to a frequency.

``twin_state.risk`` computes P(NEWS2 >= 5 within the horizon) from the Kalman filters' forecast, assuming each
vital's forecast error is Gaussian and independent of the others: a score, not a frequency (on the simulated
cohort, scores of 0.4-0.6 were followed by the event 84 % of the time). A ``Calibration`` is a monotone,
piecewise-linear map from that score to the observed frequency, fitted offline (``evaluation.evidence``: isotonic
regression on tuning cohorts) and stored as data in the policy file (section ``[calibration]``, docs/policy.md).

The alert decisions do not use it: ``policy.predicted_medium`` stays a threshold on the raw score, so a policy
file with a calibration raises exactly the alerts the same file without one raises (tested at the thresholds in
tests/unit/alerts/test_calibration.py). It is what a person is shown as a probability. Pure: no I/O.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from twin_state.errors import TwinmonError


class CalibrationError(TwinmonError, ValueError):
    """Knots that do not describe a monotone map of [0, 1] into [0, 1]."""


@dataclass(frozen=True, slots=True)
class Calibration:
    raw: tuple[float, ...]
    """Raw scores, strictly increasing, in [0, 1]."""
    calibrated: tuple[float, ...]
    """Observed frequency at each raw knot, non-decreasing, in [0, 1]."""
    threshold: int = 5
    horizon_min: float = 60.0
    fitted_on: str = ""
    """What it was fitted on, in words (cohort, seeds): the provenance a reviewer asks for."""

    def __post_init__(self) -> None:
        if len(self.raw) != len(self.calibrated) or len(self.raw) < 2:
            raise CalibrationError("raw and calibrated must be lists of the same length, at least 2")
        if any(not (math.isfinite(v) and 0.0 <= v <= 1.0) for v in (*self.raw, *self.calibrated)):
            raise CalibrationError("every knot must be a number in [0, 1]")
        if any(b <= a for a, b in zip(self.raw, self.raw[1:], strict=False)):
            raise CalibrationError("raw knots must be strictly increasing")
        if any(b < a for a, b in zip(self.calibrated, self.calibrated[1:], strict=False)):
            raise CalibrationError("calibrated values must be non-decreasing (the map is monotone)")

    def apply(self, p: float) -> float:
        """The calibrated frequency of a raw score: linear between knots, constant beyond the end knots."""
        if p <= self.raw[0]:
            return self.calibrated[0]
        if p >= self.raw[-1]:
            return self.calibrated[-1]
        i = bisect.bisect_right(self.raw, p)
        x0, x1 = self.raw[i - 1], self.raw[i]
        y0, y1 = self.calibrated[i - 1], self.calibrated[i]
        return y0 + (y1 - y0) * (p - x0) / (x1 - x0)
