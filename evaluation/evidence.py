"""``twinmon evaluate evidence``: twinmon against the comparators wards use, per phenotype, with a calibrated risk.

Cohorts (``Spec``): the phenotype cohort (``simulation.phenotypes``: six ways to deteriorate, four onset shapes,
recovery after treatment, mimics on stable patients, heavy-tailed sensor noise) or the original sepsis-like one
(``simulation.simulator``). Each runs through the worker's own ``BatchProcessor`` (``evaluation.cohort._run``),
tuning seeds and held-out seeds apart: the calibration is fitted on the tuning seeds only and every figure is
reported on the held-out ones.

Comparators (all computed from the same readings and truth):

* **Charted NEWS2** (``charted_reach``): observations at the Royal College of Physicians' minimum frequencies for
  the score last charted: 0 every 12 h, 1-4 every 4 h (``--charted-low-h 6`` for 6 h), 5-6 hourly, 7 or more
  continuous (every minute), the first round at a random phase per patient (uniform over the interval of the
  score at the start, from a generator seeded by the seed and the patient). Each observation is scored on the
  patient's TRUE vitals at that minute (the last true value of each vital, as the sensors sampled it) and the
  consciousness a nurse would chart (``PhenotypePatient.consciousness``; the twin never gets it): an ideal nurse
  without measurement error, which favours the comparator. The RCP's "a single parameter scoring 3: at least
  hourly" is applied (consciousness other than alert included); ``single_three_hourly=False`` gives the issue's
  schedule by the total alone, reported beside it. Lead over charted NEWS2 = the first charted 5 or more at or after the
  onset minus twinmon's first clinical alert (MEDIUM or above) at or after it; an episode whose charted NEWS2
  never reaches 5 within the record is censored at the record's end (its lead is a lower bound; counted).
* **Smoothed NEWS2** (``smoothed_alerts``): NEWS2 each minute on the trailing ``W``-minute mean of each vital's
  plausible readings (the catalogue's plausible ranges drop probe-off zeros and off-scale spikes), an alert
  when it goes from below 5 to 5 or more. ``W`` is chosen on the same cohort as the smallest window whose false
  alerts per patient-day do not exceed twinmon's (the matched false-alert rate): the comparator's best case.
* **Raw NEWS2** (``evaluation.cohort.RawNews2``): kept as a diagnostic.

False alerts (``false_alert_causes``), beside the headline rate and never instead of it: split by the patient's TRUE
NEWS2 at the alert (5 or more: "RCP-mandated", a ward charting then would respond too; else "spurious"), by what
the alert rests on and by the mimic active. Runs kept with ``runs_cache`` hold every evaluation's risk; another
``[policy]`` is replayed on them (``with_policy``, ``evaluation.policy_replay``) rather than rerun.

Intervals: proportions with the exact (Clopper-Pearson) 95 % interval (26/26 detected is 1.0 with a lower bound
of 0.868); medians, rates and calibration figures with a 95 % percentile bootstrap over patients
(``BOOTSTRAP`` resamples, seeded), since readings within a patient are not independent.

Calibration (``calibration_samples``, ``fit_isotonic``): every 2 min of every patient's record where the twin's
NEWS2 now is below 5 and the hour ahead lies inside the record, the raw P(NEWS2 >= 5 within 60 min) and whether
the twin's NEWS2 now reached 5 at any sweep (30 s) within the next 60 min. Isotonic regression on the tuning
seeds, stored as knots in a policy file's ``[calibration]`` section (``alerts.calibration``). Reported on the
held-out seeds: reliability diagram, expected calibration error (10 equal-width bins), Brier score against the
base-rate forecast (the tuning seeds' event rate), calibration slope and intercept (logistic regression of the
outcome on the logit of the prediction).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import pickle
import random
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

from alerts.calibration import Calibration
from alerts.config import CALIBRATION_SECTION, AlertingConfig, calibration_json, policy_id, settings_json
from alerts.policy import Level, PolicySettings
from evaluation.cohort import START_MS, Item, _Collected, _figure, _run, clinical_alert_times
from evaluation.policy_replay import COLUMNS, cause, replay
from simulation import phenotypes
from simulation.simulator import BASE_RATE, cohort_truth, simulate_with_truth
from streams.processor import RawMessage
from streams.schema import encode
from twin_state.catalogue import CATALOGUE, Metric

MS_PER_MIN = 60_000
MS_PER_DAY = 86_400_000
BOOTSTRAP = 2000
BOOTSTRAP_CALIBRATION = 400
LEAD_TARGET_MIN = 90.0
FALSE_TARGET = 0.2
ECE_TARGET = 0.05
SLOPE_RANGE = (0.8, 1.2)
SMOOTHING_WINDOWS_MIN = (1, 2, 3, 5, 10, 15, 20, 30, 45, 60, 90, 120)
SAMPLE_EVERY = 4
"""Calibration samples every 4th sweep (2 min); outcomes look at every sweep."""
HORIZON_MS = 60 * MS_PER_MIN
BINS = 10
VITALS = (Metric.RESP_RATE, Metric.SPO2, Metric.BP_SYSTOLIC, Metric.HEART_RATE, Metric.TEMPERATURE)
"""Columns of the per-minute arrays, NEWS2's order."""
_COLUMN = {m: i for i, m in enumerate(VITALS)}


@dataclass(frozen=True, slots=True)
class Spec:
    kind: str
    """``phenotypes`` or ``sepsis`` (the original simulator)."""
    patients: int
    hours: float
    seed: int
    deteriorating_share: float


@dataclass(frozen=True, slots=True)
class PatientData:
    """What one patient's run gives the comparators: picklable, no readings kept."""

    key: str
    """``seed:patient_id``: unique across seeds."""
    phenotype: str
    shape: str
    treated: bool
    mimics: tuple[tuple[str, int, int], ...]
    start_ms: int
    end_ms: int
    onset_ms: int | None
    alerts: tuple[int, ...]
    raw_reach_ms: int | None
    truth: NDArray[np.float64]
    """Per minute: the last true value of each of ``VITALS`` (NaN before the first)."""
    acvpu: NDArray[np.int64]
    """Per minute: the consciousness a nurse would chart (ACVPU index)."""
    sums: NDArray[np.float64]
    counts: NDArray[np.float64]
    """Per minute: sum and number of plausible readings of each of ``VITALS``."""
    samples: NDArray[np.float64]
    """Per sweep: t (ms), twin NEWS2 now, raw P(NEWS2 >= 5 in 60 min), raw P(NEWS2 >= 7 in 60 min)."""
    risks: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, COLUMNS)))
    """Per evaluation of the worker: ``evaluation.policy_replay.risk_row`` (to replay other ``[policy]`` settings)."""


# --- NEWS2 on arrays (the same chart as twin_state.news2, checked against it by the tests) --------------------


def _whole(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.floor(x + 0.5)


def news2_parts(values: NDArray[np.float64],
                acvpu: NDArray[np.int64] | None = None) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """NEWS2 totals of rows of ``VITALS`` values (scale 1, on air; NaN scores nothing, as raw NEWS2 scores what is
    there), plus 3 where ``acvpu`` is not alert; and each row's highest single-parameter score."""
    rr, spo2, sbp, pulse, temp = (values[:, i] for i in range(5))
    total = np.zeros(len(values), dtype=np.int64)
    single = np.zeros(len(values), dtype=np.int64)

    def add(sub: NDArray[np.int64]) -> None:
        nonlocal total, single
        total += sub
        single = np.maximum(single, sub)

    v = _whole(rr)
    add(np.select([v <= 8, v <= 11, v <= 20, v <= 24, v > 24], [3, 1, 0, 2, 3], 0))
    v = _whole(spo2)
    add(np.select([v <= 91, v <= 93, v <= 95], [3, 2, 1], 0))
    v = _whole(sbp)
    add(np.select([v <= 90, v <= 100, v <= 110, v <= 219, v > 219], [3, 2, 1, 0, 3], 0))
    v = _whole(pulse)
    add(np.select([v <= 40, v <= 50, v <= 90, v <= 110, v <= 130, v > 130], [3, 1, 0, 1, 2, 3], 0))
    v = np.floor(temp * 10.0 + 0.5 + 1e-9)
    add(np.select([v <= 350, v <= 360, v <= 380, v <= 390, v > 390], [3, 1, 0, 1, 2], 0))
    if acvpu is not None:
        add(np.where(acvpu > 0, 3, 0))
    return total, single


def news2_arrays(values: NDArray[np.float64], acvpu: NDArray[np.int64] | None = None) -> NDArray[np.int64]:
    """NEWS2 totals of rows of ``VITALS`` values (``news2_parts``)."""
    return news2_parts(values, acvpu)[0]


# --- running a cohort -----------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Minutes:
    minutes: int
    truth: NDArray[np.float64] = field(init=False)
    sums: NDArray[np.float64] = field(init=False)
    counts: NDArray[np.float64] = field(init=False)

    def __post_init__(self) -> None:
        self.truth = np.full((self.minutes, 5), np.nan)
        self.sums = np.zeros((self.minutes, 5))
        self.counts = np.zeros((self.minutes, 5))


def _stream(spec: Spec) -> Iterator[tuple[float, Any, float]]:
    duration = spec.hours * 3600.0
    if spec.kind == "phenotypes":
        return phenotypes.simulate_phenotypes(spec.patients, duration, BASE_RATE, spec.seed, START_MS,
                                              spec.deteriorating_share)
    if spec.kind == "sepsis":
        return simulate_with_truth(spec.patients, duration, BASE_RATE, spec.seed, START_MS, spec.deteriorating_share)
    raise ValueError(f"unknown cohort {spec.kind!r}: phenotypes or sepsis")


def _truth_table(spec: Spec) -> dict[str, dict[str, Any]]:
    duration = spec.hours * 3600.0
    if spec.kind == "phenotypes":
        out = {}
        for p in phenotypes.cohort(spec.patients, duration, spec.seed, spec.deteriorating_share):
            out[p.patient_id] = {
                "onset_s": p.onset_s, "phenotype": p.phenotype, "shape": p.shape if p.onset_s is not None else "",
                "treated": p.treated_s is not None, "patient": p,
                "mimics": tuple((m.kind, START_MS + round(m.start_s * 1000),
                                 START_MS + round((m.start_s + m.duration_s) * 1000)) for m in p.mimics),
            }
        return out
    return {pid: {"onset_s": o, "phenotype": "stable" if o is None else "sepsis", "shape": "" if o is None else "ramp",
                  "treated": False, "patient": None, "mimics": ()}
            for pid, (o, _r) in cohort_truth(spec.patients, duration, spec.seed, spec.deteriorating_share).items()}


def _items(spec: Spec, minutes: dict[str, _Minutes], shard: int, shards: int) -> Iterator[Item]:
    n_min = math.ceil(spec.hours * 60)
    for offset, (delivered_s, reading, truth) in enumerate(_stream(spec)):
        if shards > 1 and int(reading.patient_id.rsplit("-", 1)[1]) % shards != shard:
            continue
        col = _COLUMN.get(reading.metric)
        if col is not None:
            m = minutes.setdefault(reading.patient_id, _Minutes(n_min))
            k = min(max((reading.measured_at - START_MS) // MS_PER_MIN, 0), n_min - 1)
            m.truth[k, col] = truth
            lo, hi = CATALOGUE[reading.metric].plausible
            if lo <= reading.value <= hi:
                m.sums[k, col] += reading.value
                m.counts[k, col] += 1
        msg = RawMessage(0, offset, reading.patient_id.encode(), encode(reading))
        yield START_MS + round(delivered_s * 1000), msg, reading, truth


def _ffill(a: NDArray[np.float64]) -> NDArray[np.float64]:
    """Each column's last non-NaN value carried forward (NaN before the first)."""
    out = np.empty_like(a)
    steps = np.arange(len(a))
    for j in range(a.shape[1]):
        idx = np.where(~np.isnan(a[:, j]), steps, -1)
        np.maximum.accumulate(idx, out=idx)
        out[:, j] = np.where(idx >= 0, a[np.maximum(idx, 0), j], np.nan)
    return out


def _run_spec(job: tuple[Spec, AlertingConfig, int, int]) -> list[PatientData]:
    spec, config, shard, shards = job
    table = _truth_table(spec)
    onsets = {pid: None if t["onset_s"] is None else START_MS + round(t["onset_s"] * 1000) for pid, t in table.items()}
    minutes: dict[str, _Minutes] = {}
    collected: _Collected = asyncio.run(_run(_items(spec, minutes, shard, shards), config, onsets, (), sample_all=True,
                                                  record_risk=True))
    end_ms = START_MS + round(spec.hours * 3600 * 1000)
    n_min = math.ceil(spec.hours * 60)
    out = []
    for pid in sorted(collected.raw):
        t = table[pid]
        patient = t["patient"]
        acvpu = np.zeros(n_min, dtype=np.int64)
        if patient is not None:
            acvpu = np.array([patient.consciousness(k * 60.0 + 30.0) for k in range(n_min)], dtype=np.int64)
        m = minutes[pid]
        out.append(PatientData(
            key=f"{spec.seed}:{pid}", phenotype=t["phenotype"], shape=t["shape"], treated=t["treated"],
            mimics=t["mimics"], start_ms=START_MS, end_ms=end_ms, onset_ms=onsets[pid],
            alerts=tuple(clinical_alert_times(collected.events.get(pid, []))),
            raw_reach_ms=collected.raw[pid].first_reach, truth=_ffill(m.truth), acvpu=acvpu, sums=m.sums,
            counts=m.counts, samples=np.array(collected.samples.get(pid, []), dtype=np.float64).reshape(-1, 4),
            risks=np.array(collected.risks.get(pid, []), dtype=np.float64).reshape(-1, COLUMNS)))
    return out


def run_cohorts(specs: Sequence[Spec], config: AlertingConfig, workers: int = 1) -> list[PatientData]:
    """Every patient of every cohort, run through the worker's processing (``workers`` processes, at most 2)."""
    jobs = [(s, config, k, workers) for s in specs for k in range(workers)]
    out: list[PatientData] = []
    if workers == 1:
        for job in jobs:
            out += _run_spec(job)
    else:
        with ProcessPoolExecutor(workers) as pool:
            for part in pool.map(_run_spec, jobs):
                out += part
    return sorted(out, key=lambda p: p.key)


# --- comparators ------------------------------------------------------------------------------------------------


def charted_interval_min(score: int, low_h: float = 4.0, single_three: bool = False) -> float:
    """The RCP's minimum observation frequency for a NEWS2 total: 0 every 12 h, 1-4 every ``low_h`` h (the RCP's
    4 h), 5-6 hourly, 7 or more continuous; ``single_three`` (a single parameter scoring 3) at least hourly."""
    if score >= 7:
        return 1.0
    if score >= 5 or single_three:
        return 60.0
    if score >= 1:
        return low_h * 60.0
    return 720.0


def charted_times(p: PatientData, low_h: float = 4.0, single_three_hourly: bool = True) -> tuple[list[int], list[int]]:
    """Minutes of the charted observations and their NEWS2, the first at a random phase per patient.
    ``single_three_hourly``: the RCP's "a single parameter scoring 3: at least hourly" (False: the issue's
    schedule, by the total alone)."""
    scores, single = news2_parts(p.truth, p.acvpu)
    three = single >= 3 if single_three_hourly else np.zeros(len(scores), dtype=bool)
    rng = random.Random(f"charted:{p.key}")
    n = len(scores)
    k = rng.uniform(0, charted_interval_min(int(scores[0]), low_h, bool(three[0])))
    times, values = [], []
    while k < n:
        i = int(k)
        times.append(i)
        values.append(int(scores[i]))
        k += charted_interval_min(int(scores[i]), low_h, bool(three[i]))
    return times, values


def charted_reach(p: PatientData, low_h: float = 4.0, single_three_hourly: bool = True) -> tuple[int | None, int]:
    """(ms of the first charted NEWS2 >= 5 at or after the onset or None, false charted alerts before the onset)."""
    times, values = charted_times(p, low_h, single_three_hourly)
    onset_min = None if p.onset_ms is None else (p.onset_ms - p.start_ms) / MS_PER_MIN
    reach = None
    false = 0
    previous = 0
    for i, s in zip(times, values, strict=True):
        if s >= 5 and previous < 5 and (onset_min is None or i < onset_min):
            false += 1
        if s >= 5 and onset_min is not None and i >= onset_min and reach is None:
            reach = p.start_ms + i * MS_PER_MIN
        previous = s
    return reach, false


def smoothed_scores(p: PatientData, window_min: int) -> NDArray[np.int64]:
    """NEWS2 per minute on the trailing ``window_min``-minute mean of plausible readings (last mean carried)."""
    cs = np.cumsum(np.vstack([np.zeros((1, 5)), p.sums]), axis=0)
    cn = np.cumsum(np.vstack([np.zeros((1, 5)), p.counts]), axis=0)
    hi = np.arange(1, len(p.sums) + 1)
    lo = np.maximum(hi - window_min, 0)
    s, n = cs[hi] - cs[lo], cn[hi] - cn[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, s / np.where(n > 0, n, 1), np.nan)
    return news2_arrays(_ffill(mean))


def smoothed_alerts(p: PatientData, window_min: int) -> list[int]:
    """Times (ms, the end of the minute) at which smoothed NEWS2 went from below 5 to 5 or more."""
    s = smoothed_scores(p, window_min) >= 5
    up = np.flatnonzero(s & ~np.concatenate([[False], s[:-1]]))
    return [p.start_ms + (int(i) + 1) * MS_PER_MIN for i in up]


# --- accounting -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    """One patient under one system: the input of the bootstrap."""

    key: str
    group: str
    episode: bool
    detected: bool
    alert_ms: int | None
    false: int
    exposure_days: float


def rows(patients: Sequence[PatientData], alerts: Mapping[str, Sequence[int]]) -> list[Row]:
    out = []
    for p in patients:
        times = alerts[p.key]
        if p.onset_ms is None:
            out.append(Row(p.key, p.phenotype, False, False, None, len(times), (p.end_ms - p.start_ms) / MS_PER_DAY))
            continue
        inside = [t for t in times if p.onset_ms <= t < p.end_ms]
        out.append(Row(p.key, p.phenotype, True, bool(inside), min(inside) if inside else None,
                       sum(1 for t in times if t < p.onset_ms), (p.onset_ms - p.start_ms) / MS_PER_DAY))
    return out


def _binom_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    if k <= 0:
        return 1.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    total = 0.0
    for i in range(k, n + 1):
        total += math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
                          + i * math.log(p) + (n - i) * math.log1p(-p))
    return min(total, 1.0)


def _solve(f: Any, target: float) -> float:
    """The p in [0, 1] where the increasing function ``f`` equals ``target`` (bisection)."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if f(mid) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def exact_interval(k: int, n: int) -> list[float] | None:
    """Clopper-Pearson 95 % interval of k/n."""
    if n == 0:
        return None
    lo = 0.0 if k == 0 else _solve(lambda p: _binom_sf(k, n, p), 0.025)
    hi = 1.0 if k == n else _solve(lambda p: _binom_sf(k + 1, n, p), 0.975)
    return [round(lo, 3), round(hi, 3)]


def bootstrap(n: int, stat: Any, reps: int = BOOTSTRAP, seed: int = 16) -> list[float] | None:
    """95 % percentile interval of ``stat(indices)`` over resamples of ``n`` patients with replacement."""
    if n == 0:
        return None
    rng = np.random.default_rng(seed)
    vals = [stat(rng.integers(0, n, n)) for _ in range(reps)]
    vals = [v for v in vals if v is not None and math.isfinite(v)]
    if len(vals) < reps // 2:
        return None
    lo, hi = np.percentile(vals, [2.5, 97.5])
    return [round(float(lo), 3), round(float(hi), 3)]


def _median_or_none(x: NDArray[np.float64]) -> float | None:
    return float(np.median(x)) if len(x) else None


def summary(patients: Sequence[PatientData], alerts: Mapping[str, Sequence[int]],
            reach: Mapping[str, int | None], reps: int = BOOTSTRAP) -> dict[str, Any]:
    """Sensitivity, median lead over ``reach`` (the comparator's first 5 in the episode; None = never, censored
    at the end), false alerts per patient-day, with intervals."""
    rs = rows(patients, alerts)
    by_key = {p.key: p for p in patients}
    n = len(rs)
    episode = np.array([r.episode for r in rs])
    detected = np.array([r.detected for r in rs])
    false = np.array([r.false for r in rs], dtype=float)
    exposure = np.array([r.exposure_days for r in rs])
    lead = np.full(n, np.nan)
    censored = np.zeros(n, dtype=bool)
    for i, r in enumerate(rs):
        if r.detected and r.alert_ms is not None:
            target = reach.get(r.key)
            censored[i] = target is None
            end = by_key[r.key].end_ms if target is None else target
            lead[i] = (end - r.alert_ms) / MS_PER_MIN

    def sens(idx: NDArray[np.int64]) -> float | None:
        e = episode[idx].sum()
        return float(detected[idx].sum() / e) if e else None

    def med(idx: NDArray[np.int64]) -> float | None:
        x = lead[idx]
        return _median_or_none(x[~np.isnan(x)])

    def fpd(idx: NDArray[np.int64]) -> float | None:
        d = exposure[idx].sum()
        return float(false[idx].sum() / d) if d > 0 else None

    all_idx = np.arange(n)
    k, e = int(detected.sum()), int(episode.sum())
    m = med(all_idx)
    f = fpd(all_idx)
    return {
        "episodes": e, "detected": k, "sensitivity": None if not e else round(k / e, 3),
        "sensitivity_95ci_exact": exact_interval(k, e),
        "median_lead_min": None if m is None else round(m, 1),
        "median_lead_95ci": bootstrap(n, med, reps),
        "lead_censored_at_end": int(censored.sum()),
        "false_alerts": int(false.sum()), "false_exposure_patient_days": round(float(exposure.sum()), 2),
        "false_per_patient_day": None if f is None else round(f, 3),
        "false_per_patient_day_95ci": bootstrap(n, fpd, reps),
    }


def _alerts_of(patients: Sequence[PatientData], system: str, window: int | None = None) -> dict[str, list[int]]:
    if system == "twinmon":
        return {p.key: list(p.alerts) for p in patients}
    if system == "smoothed" and window is not None:
        return {p.key: smoothed_alerts(p, window) for p in patients}
    raise ValueError(system)


def _false_rate(patients: Sequence[PatientData], alerts: Mapping[str, Sequence[int]]) -> float:
    rs = rows(patients, alerts)
    days = sum(r.exposure_days for r in rs)
    return sum(r.false for r in rs) / days if days else math.inf


def matched_window(patients: Sequence[PatientData], target_rate: float) -> tuple[int, list[dict[str, float]]]:
    """The smallest smoothing window whose false alerts per patient-day do not exceed ``target_rate`` (else the
    one with the fewest), and every window's rate."""
    table = []
    chosen: int | None = None
    for w in SMOOTHING_WINDOWS_MIN:
        rate = _false_rate(patients, _alerts_of(patients, "smoothed", w))
        table.append({"window_min": w, "false_per_patient_day": round(rate, 3)})
        if chosen is None and rate <= target_rate:
            chosen = w
    if chosen is None:
        chosen = int(min(table, key=lambda r: r["false_per_patient_day"])["window_min"])
    return chosen, table


def comparator_figures(patients: Sequence[PatientData], low_h: float = 4.0,
                       reps: int = BOOTSTRAP, single_three_hourly: bool = True) -> dict[str, Any]:
    """Part 1 of issue 16: twinmon and smoothed NEWS2 (matched false-alert rate) against charted NEWS2."""
    charted = {p.key: charted_reach(p, low_h, single_three_hourly) for p in patients}
    charted_at = {k: v[0] for k, v in charted.items()}
    raw_at = {p.key: p.raw_reach_ms for p in patients}
    twin_alerts = _alerts_of(patients, "twinmon")
    twin_rate = _false_rate(patients, twin_alerts)
    window, windows = matched_window(patients, twin_rate)
    smooth_alerts = _alerts_of(patients, "smoothed", window)
    twin = summary(patients, twin_alerts, charted_at, reps)
    smooth = summary(patients, smooth_alerts, charted_at, reps)
    # Paired: how much earlier twinmon alerts than matched smoothed NEWS2, episodes both detect.
    twin_rows = {r.key: r for r in rows(patients, twin_alerts)}
    smooth_rows = {r.key: r for r in rows(patients, smooth_alerts)}
    paired = np.array([(s_ms - r.alert_ms) / MS_PER_MIN for k, r in twin_rows.items()
                       if r.alert_ms is not None and (s_ms := smooth_rows[k].alert_ms) is not None], dtype=np.float64)
    charted_episodes = [p for p in patients if p.onset_ms is not None]
    charted_false = sum(v[1] for v in charted.values())
    return {
        "charted_low_interval_h": low_h,
        "charted_single_three_hourly": single_three_hourly,
        "twinmon_vs_charted": twin,
        "twinmon_vs_raw_news2_diagnostic": summary(patients, twin_alerts, raw_at, reps),
        "smoothed_matched": {"window_min": window, "windows": windows, **smooth},
        "twinmon_earlier_than_smoothed_min": {
            "episodes_both_detect": len(paired),
            "median": None if not len(paired) else round(float(np.median(paired)), 1),
            "95ci": bootstrap(len(paired), lambda i: float(np.median(paired[i])), reps),
        },
        "charted": {
            "episodes_reaching_5": sum(1 for p in charted_episodes if charted_at[p.key] is not None),
            "episodes": len(charted_episodes),
            "median_charted_5_after_onset_min": _r1(_median_or_none(np.array(
                [(c_ms - o_ms) / MS_PER_MIN for p in charted_episodes
                 if (c_ms := charted_at[p.key]) is not None and (o_ms := p.onset_ms) is not None],
                dtype=np.float64))),
            "false_alerts": charted_false,
        },
        "targets": {
            "median_lead_vs_charted_min": {"target": f">= {LEAD_TARGET_MIN:g}", "value": twin["median_lead_min"],
                                           "met": (twin["median_lead_min"] or -math.inf) >= LEAD_TARGET_MIN},
            "false_per_patient_day": {"target": f"<= {FALSE_TARGET:g}", "value": twin["false_per_patient_day"],
                                      "met": (twin["false_per_patient_day"] or math.inf) <= FALSE_TARGET},
            "not_later_than_smoothed": {
                "target": "median lead vs charted >= smoothed NEWS2's at matched false-alert rate",
                "value": [twin["median_lead_min"], smooth["median_lead_min"]],
                "met": (twin["median_lead_min"] or -math.inf) >= (smooth["median_lead_min"] or -math.inf)},
        },
    }


def _r1(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def per_group(patients: Sequence[PatientData], low_h: float = 4.0, reps: int = 500) -> dict[str, Any]:
    """Part 2: sensitivity, lead and false alerts per deterioration phenotype and per onset shape; false alerts of
    stable patients attributed to the mimic active at (or ending within 30 min before) each alert."""
    charted_at = {p.key: charted_reach(p, low_h)[0] for p in patients}
    twin_alerts = _alerts_of(patients, "twinmon")
    out: dict[str, Any] = {"phenotype": {}, "shape": {}, "recovery": {}, "mimics": {}}
    for attr, table in (("phenotype", out["phenotype"]), ("shape", out["shape"])):
        for value in sorted({getattr(p, attr) for p in patients if p.onset_ms is not None}):
            group = [p for p in patients if p.onset_ms is not None and getattr(p, attr) == value]
            table[value] = summary(group, twin_alerts, charted_at, reps)
    for treated in (True, False):
        group = [p for p in patients if p.onset_ms is not None and p.treated == treated]
        out["recovery"]["treated" if treated else "not_treated"] = summary(group, twin_alerts, charted_at, reps)
    stable = [p for p in patients if p.onset_ms is None]
    kinds = [*sorted({m[0] for p in stable for m in p.mimics}), "none_active"]
    counts = dict.fromkeys(kinds, 0)
    exposure = dict.fromkeys(kinds, 0.0)
    for p in stable:
        days = (p.end_ms - p.start_ms) / MS_PER_DAY
        exposure["none_active"] += days
        for kind in {m[0] for m in p.mimics}:
            exposure[kind] += days
        for t in p.alerts:
            active = [m[0] for m in p.mimics if m[1] <= t <= m[2] + 30 * MS_PER_MIN]
            counts[active[0] if active else "none_active"] += 1
    for kind in kinds:
        out["mimics"][kind] = {
            "patients_with_it": sum(1 for p in stable if any(m[0] == kind for m in p.mimics)) if kind != "none_active"
            else len(stable),
            "false_alerts": counts[kind],
            "per_patient_day_of_patients_with_it": round(counts[kind] / exposure[kind], 3) if exposure[kind] else None,
        }
    out["stable_patients"] = len(stable)
    return out


MIMIC_AFTER_MS = 30 * MS_PER_MIN
"""A false alert is attributed to a mimic active at it or ended at most this long before it."""


def _mimic_at(p: PatientData, t: int) -> str:
    if p.onset_ms is not None:
        return "before_onset"
    active = [m[0] for m in p.mimics if m[1] <= t <= m[2] + MIMIC_AFTER_MS]
    return active[0] if active else "none_active"


def false_alert_causes(patients: Sequence[PatientData], settings: PolicySettings,
                       reps: int = BOOTSTRAP) -> dict[str, Any]:
    """The false alerts (stable patients, and deteriorating ones before the onset) split by whether the patient's
    TRUE NEWS2 (noise-free vitals and the consciousness a nurse would chart, ``news2_arrays``) was 5 or more at
    the alert's minute or the one before: "RCP-mandated" (a ward charting at that moment would have to respond
    too) or "spurious"; and by what the alert rests on (``evaluation.policy_replay.cause``) and the mimic.
    Replays ``settings`` on each patient's recorded risk stream (the same alerts as ``PatientData.alerts`` for
    the policy the runs used)."""
    n = len(patients)
    mandated = np.zeros(n)
    spurious = np.zeros(n)
    exposure = np.zeros(n)
    by_cause: dict[str, dict[str, int]] = {}
    by_mimic: dict[str, dict[str, int]] = {}
    true_at_alert: list[int] = []
    low_or_above = 0
    for i, p in enumerate(patients):
        stop = p.end_ms if p.onset_ms is None else p.onset_ms
        exposure[i] = (stop - p.start_ms) / MS_PER_DAY
        true = news2_arrays(p.truth, p.acvpu)
        low_or_above += sum(1 for a in replay(p.risks, settings, Level.LOW) if a.at < stop)
        for a in replay(p.risks, settings):
            if a.at >= stop:
                continue
            k = int(min(max((a.at - p.start_ms) // MS_PER_MIN, 0), len(true) - 1))
            score = int(true[max(k - 1, 0):k + 1].max())
            true_at_alert.append(score)
            kind = "rcp_mandated" if score >= 5 else "spurious"
            (mandated if score >= 5 else spurious)[i] += 1
            c = by_cause.setdefault(cause(p.risks[a.row], settings, a.level), {"rcp_mandated": 0, "spurious": 0})
            c[kind] += 1
            m = by_mimic.setdefault(_mimic_at(p, a.at), {"rcp_mandated": 0, "spurious": 0})
            m[kind] += 1
    days = float(exposure.sum())

    def rate(x: NDArray[np.float64]) -> tuple[float | None, list[float] | None]:
        def f(idx: NDArray[np.int64]) -> float | None:
            d = exposure[idx].sum()
            return float(x[idx].sum() / d) if d > 0 else None
        v = f(np.arange(n))
        return (None if v is None else round(v, 3)), bootstrap(n, f, reps) if reps > 0 else None

    total, total_ci = rate(mandated + spurious)
    rcp, rcp_ci = rate(mandated)
    spur, spur_ci = rate(spurious)
    return {
        "exposure_patient_days": round(days, 2),
        "false_alerts": int((mandated + spurious).sum()),
        "false_per_patient_day": total, "false_per_patient_day_95ci": total_ci,
        "rcp_mandated": int(mandated.sum()), "rcp_mandated_per_patient_day": rcp,
        "rcp_mandated_per_patient_day_95ci": rcp_ci,
        "spurious": int(spurious.sum()), "spurious_per_patient_day": spur, "spurious_per_patient_day_95ci": spur_ci,
        "by_cause": dict(sorted(by_cause.items())), "by_mimic": dict(sorted(by_mimic.items())),
        "true_news2_at_alert": {str(k): true_at_alert.count(k) for k in sorted(set(true_at_alert))},
        "low_or_above_per_patient_day": round(low_or_above / days, 3) if days else None,
    }


# --- calibration ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Samples:
    key: NDArray[np.int64]
    """Index of the patient in the cohort list."""
    p: NDArray[np.float64]
    y: NDArray[np.float64]


def calibration_samples(patients: Sequence[PatientData]) -> Samples:
    keys, ps, ys = [], [], []
    for i, pat in enumerate(patients):
        s = pat.samples
        if len(s) < 2:
            continue
        t, now, p5 = s[:, 0], s[:, 1], s[:, 2]
        hit = np.concatenate([[0], np.cumsum(now >= 5)])
        j = np.searchsorted(t, t + HORIZON_MS, side="right")
        idx = np.arange(len(t))
        y = (hit[j] - hit[idx + 1]) > 0
        ok = (now < 5) & (t + HORIZON_MS <= t[-1]) & (idx % SAMPLE_EVERY == 0)
        keys.append(np.full(int(ok.sum()), i))
        ps.append(p5[ok])
        ys.append(y[ok].astype(float))
    if not keys:
        return Samples(np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0))
    return Samples(np.concatenate(keys), np.concatenate(ps), np.concatenate(ys))


def fit_isotonic(p: NDArray[np.float64], y: NDArray[np.float64], fitted_on: str, bins: int = 200) -> Calibration:
    """Isotonic regression (pool adjacent violators) of ``y`` on ``p``, over ``bins`` equal-width bins of ``p``,
    as a ``Calibration`` whose knots are the pooled blocks' mean raw score and frequency."""
    b = np.minimum((p * bins).astype(int), bins - 1)
    w = np.bincount(b, minlength=bins).astype(float)
    sy = np.bincount(b, weights=y, minlength=bins)
    sx = np.bincount(b, weights=p, minlength=bins)
    blocks: list[list[float]] = []  # [weight, sum y, sum x]
    for k in np.flatnonzero(w):
        blocks.append([w[k], sy[k], sx[k]])
        while len(blocks) > 1 and blocks[-2][1] / blocks[-2][0] >= blocks[-1][1] / blocks[-1][0]:
            last = blocks.pop()
            blocks[-1] = [blocks[-1][0] + last[0], blocks[-1][1] + last[1], blocks[-1][2] + last[2]]
    xs = [round(bx / bw, 4) for bw, _by, bx in blocks]
    ys = [round(by / bw, 4) for bw, by, _bx in blocks]
    knots_x, knots_y = [0.0], [ys[0]]
    for x, yv in zip(xs, ys, strict=True):
        if x > knots_x[-1]:
            knots_x.append(x)
            knots_y.append(max(yv, knots_y[-1]))
    if knots_x[-1] < 1.0:
        knots_x.append(1.0)
        knots_y.append(knots_y[-1])
    return Calibration(tuple(knots_x), tuple(knots_y), 5, 60.0, fitted_on)


def apply_calibration(c: Calibration, p: NDArray[np.float64]) -> NDArray[np.float64]:
    out: NDArray[np.float64] = np.interp(p, np.array(c.raw), np.array(c.calibrated))
    return out


def ece(p: NDArray[np.float64], y: NDArray[np.float64], bins: int = BINS) -> float:
    b = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for k in range(bins):
        m = b == k
        if m.any():
            total += m.sum() * abs(p[m].mean() - y[m].mean())
    return total / len(p)


def calibration_slope(p: NDArray[np.float64], y: NDArray[np.float64]) -> tuple[float, float] | None:
    """(intercept, slope) of the logistic regression of ``y`` on logit(``p``); None if it cannot be fitted."""
    if len(p) < 10 or y.min() == y.max():
        return None
    q = np.clip(p, 1e-4, 1 - 1e-4)
    x = np.column_stack([np.ones_like(q), np.log(q / (1 - q))])
    w = np.zeros(2)
    for _ in range(50):
        mu = 1 / (1 + np.exp(-(x @ w)))
        grad = x.T @ (y - mu)
        hess = x.T @ (x * (mu * (1 - mu))[:, None]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w += step
        if np.abs(step).max() < 1e-8:
            break
    return float(w[0]), float(w[1])


def reliability(p: NDArray[np.float64], y: NDArray[np.float64], bins: int = BINS) -> list[list[float]]:
    """[bin low, bin high, mean prediction, observed frequency, samples] per non-empty bin."""
    b = np.minimum((p * bins).astype(int), bins - 1)
    out = []
    for k in range(bins):
        m = b == k
        if m.any():
            out.append([k / bins, (k + 1) / bins, round(float(p[m].mean()), 4), round(float(y[m].mean()), 4),
                        int(m.sum())])
    return out


def calibration_figures(s: Samples, c: Calibration | None, base_rate: float,
                        reps: int = BOOTSTRAP_CALIBRATION) -> dict[str, Any]:
    """ECE, Brier (and the base-rate forecast's), slope and intercept, reliability; intervals over patients."""
    if len(s.p) == 0:
        return {"samples": 0}
    p = s.p if c is None else apply_calibration(c, s.p)
    y = s.y
    patients = np.unique(s.key)
    rows_of = {k: np.flatnonzero(s.key == k) for k in patients}

    def pick(idx: NDArray[np.int64]) -> NDArray[np.int64]:
        return np.concatenate([rows_of[patients[i]] for i in idx])

    def stat(f: Any) -> list[float] | None:
        return bootstrap(len(patients), lambda idx: f(pick(idx)), reps)

    slope = calibration_slope(p, y)

    def slope_of(i: NDArray[np.int64]) -> float | None:
        r = calibration_slope(p[i], y[i])
        return None if r is None else r[1]

    return {
        "samples": len(p), "patients": len(patients), "events": int(y.sum()), "event_rate": round(float(y.mean()), 4),
        "ece": round(ece(p, y), 4), "ece_95ci": stat(lambda i: ece(p[i], y[i])),
        "brier": round(float(np.mean((p - y) ** 2)), 4),
        "brier_95ci": stat(lambda i: float(np.mean((p[i] - y[i]) ** 2))),
        "brier_base_rate": round(float(np.mean((base_rate - y) ** 2)), 4),
        "calibration_intercept": None if slope is None else round(slope[0], 3),
        "calibration_slope": None if slope is None else round(slope[1], 3),
        "calibration_slope_95ci": stat(slope_of) if slope is not None else None,
        "reliability": reliability(p, y),
    }


def calibration_report(tuning: Sequence[PatientData], held_out: Sequence[PatientData],
                       fitted_on: str, reps: int = BOOTSTRAP_CALIBRATION) -> tuple[Calibration, dict[str, Any]]:
    """Part 3: fit on ``tuning``, report raw and calibrated on ``held_out``, pooled and per phenotype."""
    fit_s = calibration_samples(tuning)
    cal = fit_isotonic(fit_s.p, fit_s.y, fitted_on)
    base = float(fit_s.y.mean())
    test = calibration_samples(held_out)
    out: dict[str, Any] = {
        "fitted_on": fitted_on, "tuning_samples": len(fit_s.p), "tuning_event_rate": round(base, 4),
        "knots": len(cal.raw),
        "held_out_raw": calibration_figures(test, None, base, reps),
        "held_out_calibrated": calibration_figures(test, cal, base, reps),
        "per_phenotype_calibrated": {},
    }
    groups = sorted({p.phenotype for p in held_out})
    for g in groups:
        sub = [p for p in held_out if p.phenotype == g]
        out["per_phenotype_calibrated"][g] = calibration_figures(calibration_samples(sub), cal, base, 200)
    cal_fig = out["held_out_calibrated"]
    lo, hi = SLOPE_RANGE
    out["targets"] = {
        "ece": {"target": f"<= {ECE_TARGET}", "value": cal_fig.get("ece"),
                "met": cal_fig.get("ece") is not None and cal_fig["ece"] <= ECE_TARGET},
        "brier_below_base_rate": {"target": "< base-rate forecast", "value": [cal_fig.get("brier"),
                                                                               cal_fig.get("brier_base_rate")],
                                  "met": (cal_fig.get("brier") or 1) < (cal_fig.get("brier_base_rate") or 0)},
        "calibration_slope": {"target": f"{lo}-{hi}", "value": cal_fig.get("calibration_slope"),
                              "met": cal_fig.get("calibration_slope") is not None
                              and lo <= cal_fig["calibration_slope"] <= hi},
    }
    return cal, out


# --- the whole thing -----------------------------------------------------------------------------------------


def evaluate_evidence(kind: str, patients: int, hours: float, tuning_seeds: Sequence[int],
                      seeds: Sequence[int], deteriorating_share: float, config: AlertingConfig | None = None,
                      workers: int = 1, reps: int = BOOTSTRAP,
                      runs_cache: Path | None = None) -> tuple[dict[str, Any], Calibration]:
    """Everything of parts 1-3 on one kind of cohort; returns the JSON-able result and the fitted calibration.

    ``runs_cache``: a file where the cohort runs are kept (this program's own pickle, never read from elsewhere);
    reused when it holds runs of the same cohorts and policy, so that the report can be rebuilt without rerunning."""
    if set(tuning_seeds) & set(seeds):
        raise ValueError("tuning and held-out seeds overlap")
    config = config or AlertingConfig()
    tune_specs = [Spec(kind, patients, hours, s, deteriorating_share) for s in tuning_seeds]
    test_specs = [Spec(kind, patients, hours, s, deteriorating_share) for s in seeds]
    key = repr((tune_specs, test_specs, replay_key(config)))
    cached = _load_runs(runs_cache, key) if runs_cache is not None else None
    if cached is None:
        tune, test = run_cohorts(tune_specs, config, workers), run_cohorts(test_specs, config, workers)
        if runs_cache is not None:
            runs_cache.parent.mkdir(parents=True, exist_ok=True)
            runs_cache.write_bytes(pickle.dumps((key, tune, test)))
    else:
        # Runs of another [policy]: the same twin and risk, so its clinical alerts are replayed on the recorded
        # risk stream (exact: evaluation.policy_replay; identical to the live alerts for the policy they ran).
        tune, test = (with_policy(ps, config.policy) for ps in cached)
    fitted_on = (f"{kind} cohort, seeds {','.join(map(str, tuning_seeds))}, {patients} patients x {hours:g} h, "
                 f"deteriorating share {deteriorating_share:g}; isotonic; policy {policy_id(config)}")
    cal, calibration = calibration_report(tune, test, fitted_on, min(reps, BOOTSTRAP_CALIBRATION))
    result = {
        "cohort": {"kind": kind, "patients_per_seed": patients, "hours": hours, "tuning_seeds": list(tuning_seeds),
                   "held_out_seeds": list(seeds), "deteriorating_share": deteriorating_share,
                   "held_out_patients": len(test), "tuning_patients": len(tune)},
        "policy_id": policy_id(config),
        "comparators_held_out": comparator_figures(test, 4.0, reps),
        "comparators_held_out_charted_6h": comparator_figures(test, 6.0, reps),
        "comparators_held_out_no_single_three": comparator_figures(test, 4.0, reps, single_three_hourly=False),
        "comparators_tuning": comparator_figures(tune, 4.0, reps),
        "per_group_held_out": per_group(test, 4.0, min(reps, 500)),
        "false_alert_causes_held_out": false_alert_causes(test, config.policy, reps),
        "false_alert_causes_tuning": false_alert_causes(tune, config.policy, reps),
        "calibration": calibration,
        "calibration_section": calibration_json(cal),
    }
    return result, cal


def replay_key(config: AlertingConfig) -> str:
    """What the recorded runs depend on besides the cohorts: everything but the ``[policy]`` thresholds, which
    ``with_policy`` replays (the re-measure prompt's gap stays: it decides when the worker evaluates)."""
    shown = settings_json(config)
    shown.pop(CALIBRATION_SECTION, None)
    gap = shown.pop("policy")["unconfirmed_min_gap_ms"]
    return orjson.dumps({**shown, "unconfirmed_min_gap_ms": gap}, option=orjson.OPT_SORT_KEYS).decode()


def with_policy(patients: Sequence[PatientData], settings: PolicySettings) -> list[PatientData]:
    """The patients with the clinical alerts ``settings`` raise on their recorded risk stream."""
    return [dataclasses.replace(p, alerts=tuple(a.at for a in replay(p.risks, settings))) for p in patients]


def _load_runs(path: Path, key: str) -> tuple[list[PatientData], list[PatientData]] | None:
    if not path.exists():
        return None
    stored_key, tune, test = pickle.loads(path.read_bytes())  # noqa: S301  # written by _run above, same user
    return (tune, test) if stored_key == key else None


# --- the report -----------------------------------------------------------------------------------------------


def _f(x: Any) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:g}"
    if isinstance(x, list):
        return "[" + ", ".join(_f(v) for v in x) + "]"
    return str(x)


def _ci(d: Mapping[str, Any], key: str, ci: str) -> str:
    return f"{_f(d.get(key))} {_f(d.get(ci))}"


def _summary_row(label: str, d: Mapping[str, Any]) -> str:
    return (f"| {label} | {d['detected']}/{d['episodes']} {_f(d['sensitivity_95ci_exact'])} | "
            f"{_ci(d, 'median_lead_min', 'median_lead_95ci')} | {d['lead_censored_at_end']} | "
            f"{d['false_alerts']} / {_f(d['false_exposure_patient_days'])} d = "
            f"{_ci(d, 'false_per_patient_day', 'false_per_patient_day_95ci')} |")


_HEAD = ("| | detected (exact 95% CI) | median lead vs charted NEWS2 5, min (bootstrap 95% CI) | censored | "
         "false alerts / exposure = per patient-day (95% CI) |\n|---|---|---|---:|---|")


def write_evidence_report(result: Mapping[str, Any], out_dir: Path | str, command: str) -> list[Path]:
    """``evidence.md``, ``evidence.json``, ``calibration.toml`` and the plots in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "evidence.md", out / "evidence.json", out / "calibration.toml"]
    paths[1].write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    paths[2].write_text(calibration_toml(result["calibration_section"]), encoding="utf-8")
    paths.append(_plot_reliability(result["calibration"], out / "reliability.png"))
    paths.append(_plot_leads(result, out / "leads.png"))
    c = result["cohort"]
    cmp_, cmp6 = result["comparators_held_out"], result["comparators_held_out_charted_6h"]
    md = [
        "# twinmon: clinical evidence (issue 16)", "",
        f"`{command}`", "",
        f"{c['kind']} cohort, {c['patients_per_seed']} patients x {c['hours']:g} h per seed, deteriorating share "
        f"{c['deteriorating_share']:g}; tuning seeds {c['tuning_seeds']} ({c['tuning_patients']} patients), held-out "
        f"seeds {c['held_out_seeds']} ({c['held_out_patients']} patients). Policy `{result['policy_id']}`. "
        "Definitions: `evaluation/evidence.py` module docstring.", "",
        "## 1. Against charted NEWS2 (held-out seeds)", "",
        _HEAD,
        _summary_row("twinmon, lead vs charted (4 h at 1-4)", cmp_["twinmon_vs_charted"]),
        _summary_row("twinmon, lead vs charted (6 h at 1-4)", cmp6["twinmon_vs_charted"]),
        _summary_row("twinmon, lead vs charted (4 h at 1-4, single 3 not hourly)",
                     result["comparators_held_out_no_single_three"]["twinmon_vs_charted"]),
        _summary_row(f"smoothed NEWS2 ({cmp_['smoothed_matched']['window_min']} min, matched), vs charted",
                     cmp_["smoothed_matched"]),
        _summary_row("twinmon, lead vs raw NEWS2 5 (diagnostic)", cmp_["twinmon_vs_raw_news2_diagnostic"]), "",
        f"twinmon alerts a median {_f(cmp_['twinmon_earlier_than_smoothed_min']['median'])} min "
        f"{_f(cmp_['twinmon_earlier_than_smoothed_min']['95ci'])} earlier than matched smoothed NEWS2 "
        f"({cmp_['twinmon_earlier_than_smoothed_min']['episodes_both_detect']} episodes both detect). Charted NEWS2 "
        f"reached 5 in {cmp_['charted']['episodes_reaching_5']}/{cmp_['charted']['episodes']} episodes, a median "
        f"{_f(cmp_['charted']['median_charted_5_after_onset_min'])} min after the onset; "
        f"{cmp_['charted']['false_alerts']} charted 5+ before an onset or on stable patients.", "",
        "Smoothing windows and their false alerts per patient-day: "
        + ", ".join(f"{w['window_min']} min {w['false_per_patient_day']:g}"
                    for w in cmp_["smoothed_matched"]["windows"])
        + ".", "",
        "| target | required | twinmon | met |", "|---|---|---|---|",
    ]
    md += [f"| {k.replace('_', ' ')} | {v['target']} | {_f(v['value'])} | {'yes' if v['met'] else '**NO**'} |"
           for k, v in cmp_["targets"].items()]
    md += ["", "False alerts split by the patient's TRUE NEWS2 (noise-free vitals, charted consciousness) at the "
           "alert: 5 or more = RCP-mandated (a ward charting then would respond too), else spurious. The headline "
           "rate above is the total.", "",
           "| seeds | false alerts / exposure = per patient-day (95% CI) | RCP-mandated | spurious | by cause "
           "(mandated/spurious) |", "|---|---|---|---|---|"]
    for label, fc in (("held out", result["false_alert_causes_held_out"]),
                      ("tuning", result["false_alert_causes_tuning"])):
        causes = ", ".join(f"{k} {v['rcp_mandated']}/{v['spurious']}" for k, v in fc["by_cause"].items())
        md.append(f"| {label} | {fc['false_alerts']} / {_f(fc['exposure_patient_days'])} d = "
                  f"{_ci(fc, 'false_per_patient_day', 'false_per_patient_day_95ci')} | "
                  f"{fc['rcp_mandated']}: "
                  f"{_ci(fc, 'rcp_mandated_per_patient_day', 'rcp_mandated_per_patient_day_95ci')}"
                  f" | {fc['spurious']}: {_ci(fc, 'spurious_per_patient_day', 'spurious_per_patient_day_95ci')} | "
                  f"{causes} |")
    fc = result["false_alert_causes_held_out"]
    md += ["", "Held out, by mimic (mandated/spurious): "
           + ", ".join(f"{k} {v['rcp_mandated']}/{v['spurious']}" for k, v in fc["by_mimic"].items()) + ". "
           f"Clinical alerts raised or escalated at LOW or above (LOW included: single 3, a MEDIUM being "
           f"confirmed): {_f(fc['low_or_above_per_patient_day'])} per patient-day."]
    g = result["per_group_held_out"]
    md += ["", "## 2. Per phenotype, onset shape and recovery (held-out seeds; lead vs charted NEWS2, 4 h)", "",
           _HEAD.replace("| |", "| group |", 1)]
    for section in ("phenotype", "shape", "recovery"):
        md += [_summary_row(f"{section}: {name}", d) for name, d in g[section].items()]
    md += ["", f"False alerts of the {g['stable_patients']} stable patients, by the mimic active at the alert "
           "(or ended within 30 min before it):", "", "| mimic | patients with it | false alerts | per patient-day "
           "of those patients |", "|---|---:|---:|---:|"]
    md += [f"| {k} | {v['patients_with_it']} | {v['false_alerts']} | {_f(v['per_patient_day_of_patients_with_it'])} |"
           for k, v in g["mimics"].items()]
    cal = result["calibration"]
    md += ["", "## 3. Calibration of P(NEWS2 >= 5 within 60 min) (held-out seeds)", "",
           f"Fitted on: {cal['fitted_on']} ({cal['tuning_samples']} samples, event rate {cal['tuning_event_rate']}, "
           f"{cal['knots']} knots; `calibration.toml`).", "",
           "| | samples (patients, events) | ECE (95% CI) | Brier (95% CI) | base-rate Brier | slope (95% CI) | "
           "intercept |", "|---|---|---|---|---|---|---|"]

    def cal_row(label: str, d: Mapping[str, Any]) -> str:
        if not d.get("samples"):
            return f"| {label} | 0 | | | | | |"
        return (f"| {label} | {d['samples']} ({d['patients']}, {d['events']}) | {_ci(d, 'ece', 'ece_95ci')} | "
                f"{_ci(d, 'brier', 'brier_95ci')} | {_f(d['brier_base_rate'])} | "
                f"{_ci(d, 'calibration_slope', 'calibration_slope_95ci')} | {_f(d['calibration_intercept'])} |")

    md += [cal_row("raw score", cal["held_out_raw"]), cal_row("calibrated", cal["held_out_calibrated"])]
    md += [cal_row(f"calibrated, {k}", v) for k, v in cal["per_phenotype_calibrated"].items()]
    md += ["", "| target | required | value | met |", "|---|---|---|---|"]
    md += [f"| {k.replace('_', ' ')} | {v['target']} | {_f(v['value'])} | {'yes' if v['met'] else '**NO**'} |"
           for k, v in cal["targets"].items()]
    md += ["", "![reliability](reliability.png)", "", "![leads](leads.png)", ""]
    paths[0].write_text("\n".join(md), encoding="utf-8")
    return paths


def calibration_toml(section: Mapping[str, Any]) -> str:
    """The ``[calibration]`` section as TOML, to append to a policy file."""
    def nums(xs: Sequence[float]) -> str:
        return "[" + ", ".join(f"{x:g}" for x in xs) + "]"

    return ("[calibration]                     # alerts.calibration: raw P(NEWS2 >= 5 within 60 min) -> frequency\n"
            f"threshold = {section['threshold']}\n"
            f"horizon_min = {section['horizon_min']:.1f}\n"
            f"fitted_on = {orjson.dumps(section['fitted_on']).decode()}\n"
            f"raw = {nums(section['raw'])}\n"
            f"calibrated = {nums(section['calibrated'])}\n")


def _plot_reliability(cal: Mapping[str, Any], path: Path) -> Path:
    fig = _figure(12.0, 5.0)
    axes = fig.subplots(1, 2)
    for ax, (label, d) in zip(axes, (("raw score", cal["held_out_raw"]), ("calibrated", cal["held_out_calibrated"])),
                              strict=True):
        ax.plot([0, 1], [0, 1], color="black", linewidth=0.8, linestyle=":")
        rel = d.get("reliability") or []
        ax.plot([r[2] for r in rel], [r[3] for r in rel], marker="o", color="tab:blue", label="all held-out")
        if label == "calibrated":
            for name, sub in cal["per_phenotype_calibrated"].items():
                r2 = sub.get("reliability") or []
                ax.plot([r[2] for r in r2], [r[3] for r in r2], marker=".", linewidth=0.7, alpha=0.7, label=name)
        ax.set_xlabel("predicted P(NEWS2 >= 5 within 60 min)")
        ax.set_ylabel("observed frequency")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(f"{label}: ECE {_f(d.get('ece'))}, slope {_f(d.get('calibration_slope'))}", fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle("Reliability on held-out seeds (10 bins)")
    fig.savefig(path, format="png", dpi=100)
    return path


def _plot_leads(result: Mapping[str, Any], path: Path) -> Path:
    fig = _figure(10.0, 4.5)
    ax = fig.subplots()
    groups = result["per_group_held_out"]["phenotype"]
    names = list(groups)
    for i, name in enumerate(names):
        d = groups[name]
        m, ci = d["median_lead_min"], d["median_lead_95ci"]
        if m is None:
            continue
        err = [[max(m - ci[0], 0.0)], [max(ci[1] - m, 0.0)]] if ci else None
        ax.errorbar([i], [m], yerr=err, fmt="o", color="tab:blue", capsize=4)
        ax.annotate(f"{d['detected']}/{d['episodes']}", (i, m), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.axhline(LEAD_TARGET_MIN, color="green", linestyle="--", linewidth=0.8, label="target 90 min")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
    ax.set_ylabel("median lead vs charted NEWS2 5, min (95% CI)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title("twinmon's lead over charted NEWS2 per phenotype (held-out seeds; detected/episodes)")
    fig.savefig(path, format="png", dpi=100)
    return path
