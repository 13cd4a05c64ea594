"""How much closer to the truth the twin is than the raw readings, on simulated patients whose truth is known.

For every reading of a vital (after a warm-up), two errors against the patient's true value at the reading's
measured-at time: the raw reading's, and the twin's filtered level right after processing that reading,
whatever the twin did with it (applied, rejected as an artefact, late...). The same readings count for both,
so the comparison is like for like; artefacts (probe-off zeros, motion spikes) count in the raw error, as they
would on a screen that showed raw values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

from simulation.simulator import simulate_with_truth
from twin_state.catalogue import CATALOGUE, Metric
from twin_state.twin import Position, Twin, new_twin, step

EVALUATED: tuple[Metric, ...] = (
    Metric.HEART_RATE,
    Metric.SPO2,
    Metric.RESP_RATE,
    Metric.TEMPERATURE,
    Metric.BP_SYSTOLIC,
    Metric.BP_DIASTOLIC,
)
START_MS = 1_763_942_400_000
WARM_UP_S = 600.0
"""Readings measured in each patient's first 10 minutes are left out: the filters are still starting."""


class Accuracy(NamedTuple):
    raw_rmse: float
    filtered_rmse: float
    n: int

    @property
    def reduction(self) -> float:
        """Share of the raw error the filter removes: 0.4 means the filtered RMSE is 40 % lower."""
        return 1.0 - self.filtered_rmse / self.raw_rmse if self.raw_rmse > 0 else 0.0


class ErrorSample(NamedTuple):
    """One counted reading: its error and the filtered level's error against the truth."""

    metric: Metric
    raw_error: float
    filtered_error: float
    plausible: bool
    """The raw value is inside the vital's plausible range (not a probe-off zero or an off-scale spike)."""


def filter_errors(
    patients: int,
    duration_s: float,
    seed: int,
    *,
    deteriorating_share: float = 0.3,
    rate: float = 1.0,
    warm_up_s: float = WARM_UP_S,
) -> list[ErrorSample]:
    """Every counted reading of a vital in ``EVALUATED``, with its raw and filtered error.

    Readings are folded into their patient's twin in delivery order, as the worker would. A reading counts
    when it was measured at least ``warm_up_s`` after the start and its vital already has a filter.
    """
    twins: dict[str, Twin] = {}
    samples: list[ErrorSample] = []
    after_ms = START_MS + round(warm_up_s * 1000)
    stream = simulate_with_truth(patients, duration_s, rate=rate, seed=seed, start_ms=START_MS,
                                 deteriorating_share=deteriorating_share)
    for offset, (_delivered, reading, truth) in enumerate(stream):
        twin = twins.get(reading.patient_id) or new_twin(reading.patient_id)
        twin, _outcome = step(twin, reading, Position(0, offset))
        twins[reading.patient_id] = twin
        metric = reading.metric
        if metric not in EVALUATED or reading.measured_at < after_ms:
            continue
        vital = twin.vitals.get(metric)
        if vital is None:
            continue
        lo, hi = CATALOGUE[metric].plausible
        samples.append(ErrorSample(metric, reading.value - truth, vital.filter.level - truth,
                                   lo <= reading.value <= hi))
    return samples


def summarise(samples: Iterable[ErrorSample], *, plausible_only: bool = False) -> dict[Metric, Accuracy]:
    """RMSEs per vital; with ``plausible_only``, readings outside the plausible range are left out of both."""
    raw_sq: dict[Metric, float] = dict.fromkeys(EVALUATED, 0.0)
    filt_sq: dict[Metric, float] = dict.fromkeys(EVALUATED, 0.0)
    counts: dict[Metric, int] = dict.fromkeys(EVALUATED, 0)
    for s in samples:
        if plausible_only and not s.plausible:
            continue
        raw_sq[s.metric] += s.raw_error * s.raw_error
        filt_sq[s.metric] += s.filtered_error * s.filtered_error
        counts[s.metric] += 1
    return {
        m: Accuracy(math.sqrt(raw_sq[m] / counts[m]) if counts[m] else math.nan,
                    math.sqrt(filt_sq[m] / counts[m]) if counts[m] else math.nan, counts[m])
        for m in EVALUATED
    }


def format_accuracy(result: dict[Metric, Accuracy]) -> str:
    """A small fixed-width table: vital, n, raw RMSE, filtered RMSE, reduction."""
    lines = [f"{'vital':<14}{'n':>9}{'raw RMSE':>11}{'filt RMSE':>11}{'reduction':>11}"]
    for metric, acc in result.items():
        lines.append(f"{metric.value:<14}{acc.n:>9}{acc.raw_rmse:>11.3f}{acc.filtered_rmse:>11.3f}"
                     f"{100 * acc.reduction:>10.1f}%")
    return "\n".join(lines)
