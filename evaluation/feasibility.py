"""How early can the simulated cohort's deterioration be told apart from noise? A diagnostic for the lead-time target.

The lead-time target asks for an alert 30 minutes before raw NEWS2 first reaches 5, which on the simulated
cohort happens a median of about half an hour after the true onset: an alert within a few minutes of the onset.
This module measures, from the simulator's own model (no twin, no policy), how far a deteriorating patient has
moved ``k`` minutes after the onset, for ``k`` in ``KS``, against the two things any detector must see it
through:

* **reading noise**: each reading's error (value minus the noise-free truth; the robust SD, 1.4826 x median
  absolute deviation, so artefacts do not inflate it), and the readings per minute of each vital;
* **natural variability**: stable patients' own physiology (circadian rhythm, bouts of activity). The statistic
  is the one a drift detector with an hour of memory tests: the noise-free value at ``t + k`` minus its mean over
  the hour before ``t`` (``BASELINE_MIN``), over every minute ``t`` of every stable patient.

The deterioration's own movement (``drift``) is the difference between a deteriorating patient's noise-free
value and the same patient's without the deterioration (the simulator re-created with the same seed and no
onset: the activity chain is the same, so only the deterioration differs). Reported per vital in units of the
stable patients' SD of that statistic (``z``), and jointly: the Mahalanobis distance of the drift vector under
the stable patients' covariance of the five vitals (heart rate, breathing and pressure move together with
activity), which is the best separation a detector combining all five can have if it knew the direction of
the deterioration in advance, and an upper bound for any that does not. ``noise_only_z`` is the separation if
physiology did not vary at all and every reading of the ``k`` minutes were averaged against a baseline known
exactly: the bound that reading noise alone sets.

A detector that looks once a minute and may raise 0.2 false alerts per patient-day needs, for independent
looks, a separation of ``REQUIRED_Z`` (the normal quantile of 1 - 0.2 / 1440); true NEWS2 (the chart on the
noise-free values) at ``onset + k`` is reported beside it.

Run: ``twinmon evaluate feasibility --patients 100 --hours 24 --seed 1 [--json FILE]``.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from simulation.simulator import Patient, _make_patient, simulate_with_truth
from twin_state.catalogue import CATALOGUE, Metric
from twin_state.errors import TwinmonError
from twin_state.news2 import Inputs, score

KS = (2, 5, 10, 20)
"""Minutes after the onset at which the episodes are measured."""
VITALS = (Metric.HEART_RATE, Metric.RESP_RATE, Metric.SPO2, Metric.TEMPERATURE, Metric.BP_SYSTOLIC)
BASELINE_MIN = 60
"""The detector's memory: the hour before ``t`` is what ``t + k`` is compared with."""
ALLOWED_FALSE_PER_DAY = 0.2
LOOKS_PER_DAY = 1440
REQUIRED_Z = statistics.NormalDist().inv_cdf(1.0 - ALLOWED_FALSE_PER_DAY / LOOKS_PER_DAY)
NOISE_SAMPLE_PATIENTS = 10
NOISE_SAMPLE_S = 4 * 3600.0


@dataclass(frozen=True, slots=True)
class Noise:
    sd: dict[Metric, float]
    """Robust SD of one reading's error, artefacts excluded."""
    per_min: dict[Metric, float]
    """Readings per minute (all devices)."""


def reading_noise(seed: int, patients: int = NOISE_SAMPLE_PATIENTS, duration_s: float = NOISE_SAMPLE_S) -> Noise:
    errors: dict[Metric, list[float]] = {m: [] for m in VITALS}
    for _, reading, truth in simulate_with_truth(patients, duration_s, seed=seed):
        if reading.metric not in errors:
            continue
        lo, hi = CATALOGUE[reading.metric].plausible
        if lo <= reading.value <= hi:
            errors[reading.metric].append(reading.value - truth)
    minutes = patients * duration_s / 60.0
    sd = {}
    for m, e in errors.items():
        med = statistics.median(e)
        sd[m] = 1.4826 * statistics.median(abs(x - med) for x in e)
    return Noise(sd, {m: len(e) / minutes for m, e in errors.items()})


GRID_MIN = 0.5
"""Step of the noise-free time grid, minutes: activity changes the body within about a minute."""


def _truth(p: Patient, t_s: float) -> np.ndarray:
    return np.array([p.truth(m, t_s) for m in VITALS])


def _window_steps(k: float) -> int:
    return max(round(k / GRID_MIN), 1)


def stable_variability(people: Sequence[Patient], duration_s: float, ks: Sequence[int] = KS) -> dict[int, np.ndarray]:
    """Covariance (``VITALS`` order) of the noise-free statistic: mean over ``[t, t + k)`` minus mean over the
    hour before ``t``, over every grid point ``t`` of the stable patients ``people`` (each is advanced through
    its simulated time)."""
    diffs: dict[int, list[np.ndarray]] = {k: [] for k in ks}
    base_n = _window_steps(BASELINE_MIN)
    for p in people:
        steps = int(duration_s / 60.0 / GRID_MIN)
        grid = np.array([_truth(p, 60.0 * GRID_MIN * i) for i in range(steps)])
        csum = np.vstack([np.zeros(len(VITALS)), np.cumsum(grid, axis=0)])
        for k in ks:
            n = _window_steps(k)
            t = np.arange(base_n, steps - n)
            recent = (csum[t + n] - csum[t]) / n
            base = (csum[t] - csum[t - base_n]) / base_n
            diffs[k].append(recent - base)
    return {k: np.cov(np.vstack(d), rowvar=False) for k, d in diffs.items()}


def noise_variance(noise: Noise, k: float) -> np.ndarray:
    """Diagonal variance that reading noise adds to the statistic when every reading is averaged: the readings
    of the ``k`` minutes and of the hour before (expected counts; a vital read less than once in ``k`` minutes
    gets the variance that its expected information implies)."""
    return np.diag([noise.sd[m] ** 2 * (1.0 / (noise.per_min[m] * k) + 1.0 / (noise.per_min[m] * BASELINE_MIN))
                    for m in VITALS])


@dataclass(frozen=True, slots=True)
class Episode:
    onset_s: float
    ramp_s: float
    drift: dict[int, np.ndarray]
    """k -> the deterioration's own part of the noise-free values, averaged over ``[onset, onset + k)``."""
    drift_at: dict[int, np.ndarray]
    """k -> the same at ``onset + k``."""
    news2: dict[int, int]
    """k -> true NEWS2 (full chart on the noise-free values; consciousness A, air) at ``onset + k``; k = 0 too."""


def episode(index: int, seed: int, duration_s: float, share: float, ks: Sequence[int] = KS) -> Episode:
    """One deteriorating patient, measured against the same patient re-created without the deterioration."""
    ill = _make_patient(index, seed, duration_s, share)
    well = _make_patient(index, seed, duration_s, share)
    if ill.onset_s is None:
        raise ValueError(f"patient {index} does not deteriorate")
    well.onset_s = None
    onset = ill.onset_s
    steps = _window_steps(max(ks))
    diffs = []
    for j in range(steps + 1):  # both in time order: the activity chains stay identical
        t = onset + 60.0 * GRID_MIN * j
        diffs.append(_truth(ill, t) - _truth(well, t))
    drift = {k: np.mean(diffs[: _window_steps(k)], axis=0) for k in ks}
    drift_at = {k: diffs[_window_steps(k)] for k in ks}
    news2 = {}
    for k in (0, *ks):
        hr, rr, spo2, temp, sbp = (float(v) for v in _truth(ill, onset + 60.0 * k))
        news2[k] = score(Inputs(rr=rr, spo2=spo2, on_oxygen=False, sbp=sbp, pulse=hr, temp=temp, acvpu="A")).total
    return Episode(onset, ill.ramp_s, drift, drift_at, news2)


def _median(xs: Sequence[float]) -> float:
    return round(float(statistics.median(xs)), 2)


def _z(delta: np.ndarray, cov: np.ndarray) -> float:
    return float(np.sqrt(delta @ np.linalg.solve(cov, delta)))


class CohortTooSmall(TwinmonError, ValueError):
    """The cohort has no stable or no deteriorating patient, or is too short for the statistic."""


def min_duration_s(ks: Sequence[int] = KS) -> float:
    """The shortest cohort whose stable patients give the statistic at two grid points at least: the hour before
    ``t`` and the longest ``k`` after it."""
    return 60.0 * GRID_MIN * (_window_steps(BASELINE_MIN) + _window_steps(max(ks)) + 2)


def feasibility(patients: int, duration_s: float, seed: int, share: float = 0.3) -> dict[str, Any]:
    """The diagnostic for the simulated cohort ``twinmon evaluate`` runs with the same arguments."""
    if int(duration_s / 60.0 / GRID_MIN) < round(min_duration_s() / 60.0 / GRID_MIN):
        raise CohortTooSmall(f"the cohort must be at least {min_duration_s() / 3600:g} h long (the hour before "
                             f"each minute and the {max(KS)} min after it), not {duration_s / 3600:g} h")
    people = [_make_patient(i, seed, duration_s, share) for i in range(patients)]
    stable = [p for p in people if p.onset_s is None]
    ill = [i for i, p in enumerate(people) if p.onset_s is not None and p.onset_s < duration_s]
    if not stable or not ill:
        raise CohortTooSmall(f"a cohort of {patients} (seed {seed}, share deteriorating {share:g}) has {len(stable)} "
                             f"stable and {len(ill)} deteriorating patients; the diagnostic needs one of each at least")
    natural = stable_variability(stable, duration_s)
    noise = reading_noise(seed)
    names = [m.value for m in VITALS]
    episodes = [episode(i, seed, duration_s, share) for i in ill]
    by_k: dict[str, Any] = {}
    for k in KS:
        total = natural[k] + noise_variance(noise, k)
        sd = np.sqrt(np.diag(total))
        joint = [_z(e.drift[k], total) for e in episodes]
        by_k[str(k)] = {
            "median_drift_at": {n: _median([abs(float(e.drift_at[k][j])) for e in episodes])
                                for j, n in enumerate(names)},
            "median_drift_window_mean": {n: _median([abs(float(e.drift[k][j])) for e in episodes])
                                         for j, n in enumerate(names)},
            "sd_natural": dict(zip(names, (round(float(x), 3) for x in np.sqrt(np.diag(natural[k]))), strict=True)),
            "sd_noise": dict(zip(names, (round(float(x), 3) for x in np.sqrt(np.diag(noise_variance(noise, k)))),
                                 strict=True)),
            "median_z": {n: _median([abs(float(e.drift[k][j])) / sd[j] for e in episodes])
                         for j, n in enumerate(names)},
            "joint_z_median": _median(joint),
            "joint_z_range": [round(min(joint), 2), round(max(joint), 2)],
            "episodes_with_joint_z_at_least_required": sum(1 for z in joint if z >= REQUIRED_Z),
            "true_news2_median": _median([e.news2[k] for e in episodes]),
            "episodes_true_news2_rose": sum(1 for e in episodes if e.news2[k] > e.news2[0]),
            "episodes_true_news2_at_least_5": sum(1 for e in episodes if e.news2[k] >= 5),
        }
    return {
        "cohort": {"patients": patients, "hours": duration_s / 3600, "seed": seed, "deteriorating_share": share,
                   "episodes": len(episodes), "stable": len(stable),
                   "ramp_min_median": _median([e.ramp_s / 60 for e in episodes])},
        "required_z": round(REQUIRED_Z, 2),
        "reading_noise_sd": {m.value: round(noise.sd[m], 3) for m in VITALS},
        "readings_per_min": {m.value: round(noise.per_min[m], 2) for m in VITALS},
        "true_news2_at_onset_median": _median([e.news2[0] for e in episodes]),
        "by_minutes_after_onset": by_k,
    }
