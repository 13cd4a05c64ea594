"""``twinmon evaluate``: does the alerting catch deterioration early, and at what cost in alerts?

A cohort runs offline through the worker's own ``BatchProcessor`` (decode, twin step, risk, alert policy,
``InMemoryTwinStore``; the published alert events are collected): the simulated cohort (``evaluate_cohort``)
with known deterioration onsets, artefacts and dropouts, or a recorded file of ``vitals`` events
(``evaluate_recorded``, alert burden only: a recording has no truth). ``compare`` runs the same cohort under two
configurations (TOML, ``load_config``) and reports the differences side by side.

How the cohort is run
---------------------
All messages go to one partition, in delivery order (buffered uploads arrive late, as from the gateway), with
consecutive offsets, in batches of at most ``BATCH_MAX`` messages. The processor's wall clock is the simulated
delivery time (for a recording, the newest measured-at so far), and every ``SWEEP_EVERY_MS`` of it the batch is
cut and the quiet-patient sweep runs, as the live worker's timer does. Batches end at the same simulated
moments whatever else is in them, and a patient's results do not depend on the other patients, so the cohort
can be split across processes (patient index modulo ``workers``) with identical results.

Definitions (fixed before the defaults were tuned; the same for every configuration and system)
-------------------------------------------------------------------------------------------------
* **Clinical alert** (twinmon): a notification that a patient's clinical condition is at ``ALERT_LEVEL``
  (MEDIUM) or above and worse than the care team has been told: an alert of condition ``clinical``
  ``raised`` at MEDIUM or HIGH, or ``escalated`` for worsening (to a higher level, MEDIUM or HIGH: LOW to
  MEDIUM, LOW or MEDIUM to HIGH). MEDIUM is what NEWS2 5-6 and the predicted risk map to, the level at which a
  clinician is called, so it is what is compared with raw NEWS2 reaching 5. Worsening counts because an
  alert open before the onset (de-duplication allows no second one) tells the team of the episode only by
  escalating. Re-notifications at the same level (``unacknowledged``) are not new alerts. LOW clinical
  alerts (a single parameter scoring 3) and technical alerts count in "all alerts" only.
* **All alerts**: every ``raised`` event, of any condition and level (clinical LOW/MEDIUM/HIGH, ``no_data``,
  ``signal_quality``), and every escalation for worsening, per patient-day of monitoring (patients x simulated
  days): every notification of something new or worse, a superset of the clinical alerts.
* **Deterioration episode**: a patient whose simulated deterioration starts (``onset``) within the simulated
  time; it lasts to the end of the simulation (the simulator's patients do not recover). The episode is
  **detected** by a system if that system raises a clinical alert at or after ``onset - EARLY_TOLERANCE_MS``
  and before the end. The tolerance is 0: the simulated physiology is exactly the baseline until the onset,
  so nothing before it can be a sign of it. **Sensitivity** = detected episodes / episodes.
* **False alert**: a clinical alert of a stable patient, or of a deteriorating patient before
  ``onset - EARLY_TOLERANCE_MS``; counted per patient-day of **false-alert exposure**: the whole simulated time
  of stable patients plus, for deteriorating ones, the time before their onset.
* **Raw NEWS2** (``RawNews2``): NEWS2 scored on the raw readings as a monitor shows them: in delivery order,
  each vital's most recent reading by measured-at carried forward for ever (no staleness), artefacts
  included; heart rate from either device (whichever measured last). Wearables send no consciousness or
  oxygen, so the score is partial (those count 0), SpO2 scale 1. It is scored after every reading of a scored
  vital and stamped with that reading's measured-at.
* **Raw NEWS2 reaches 5**, for an episode: the first time at or after ``onset - EARLY_TOLERANCE_MS`` that raw
  NEWS2 is >= 5 (a crossing before the onset is an artefact, not the episode's).
* **Lead time** of a detected episode, in minutes, positive when the alert came first: vs the true onset,
  ``onset - first alert`` (never positive here, with tolerance 0: it is minus the detection delay); vs raw
  NEWS2, ``raw NEWS2 reaches 5 - first alert``. Reported as medians over detected episodes.
* **True NEWS2** (a diagnostic, simulated cohorts only): the same scoring on the simulator's noise-free
  values of each reading; "true NEWS2 reaches 5" and the lead times against it are reported beside the
  targets, not as one.
* **Naive baseline**: raw NEWS2 on every reading; an alert each time the score goes from below 5 to 5 or
  more (from the start, below 5 is assumed), with no persistence or hysteresis. Its alerts are accounted as
  twinmon's (the same episodes, tolerance, exposure); it has no other kind of alert, so its "all alerts" are
  these. A second, less naive baseline (``baseline_plausible``) drops readings outside the catalogue's
  plausible range (probe-off zeros, off-scale spikes) before scoring, as any monitor's artefact check would.
* **Targets** (``TARGETS``): sensitivity >= 0.9; median lead time vs raw NEWS2 reaching 5 >= 30 min; <= 0.2 false
  alerts per patient-day, and at least 5 times fewer than the naive baseline with sensitivity at least
  the baseline's.

Configurations (``--config FILE``, ``--compare A.toml B.toml``)
-----------------------------------------------------------------
Each is a policy file, read by ``alerts.config.load_config`` exactly as the worker reads
``TWINMON_POLICY_FILE``; its keys, defaults and id are in docs/policy.md (deploy/policy/default.toml is the
shipped one). Every report carries the settings it ran with and their ``policy_id``.
"""

from __future__ import annotations

import asyncio
import math
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from alerts.config import AlertingConfig, policy_id, settings_json
from alerts.config import ConfigError as ConfigError  # re-exported: the loader's home is alerts.config
from alerts.config import load_config as load_config
from alerts.config import parse_config as parse_config
from alerts.policy import HOLD_ENDED, AlertEvent, Condition, Kind, Level, reason_head
from evaluation import require_charts
from evaluation.policy_replay import risk_row
from simulation.replay import recording_clock
from simulation.simulator import BASE_RATE, cohort_truth, simulate_with_truth
from streams.processor import BatchProcessor, BatchResult, RawMessage
from streams.schema import Rejected, decode, encode
from twin_state.catalogue import ACVPU, CATALOGUE, Metric
from twin_state.news2 import Inputs, score
from twin_state.risk import Risk, risk
from twin_state.store import InMemoryTwinStore
from twin_state.twin import Reading, Twin

START_MS = 1_763_942_400_000
MS_PER_MIN = 60_000
MS_PER_DAY = 86_400_000
ALERT_LEVEL = Level.MEDIUM
EARLY_TOLERANCE_MS = 0
RAW_THRESHOLD = 5
BATCH_MAX = 2_000
SWEEP_EVERY_MS = 30_000
"""The live worker's quiet-patient sweep runs every 30 s of wall clock."""
WORSENED = "worsened"
"""The reason of an escalation for a higher level (``alerts.policy.decide``), as opposed to ``unacknowledged``."""
TRACED = 4
"""Patients whose timelines are recorded for the report: the first three who deteriorate, the first stable."""

TARGETS = {
    "sensitivity_min": 0.9,
    "median_lead_raw5_min_min": 30.0,
    "false_per_patient_day_max": 0.2,
    "fewer_false_than_baseline_factor": 5.0,
}


# --- raw NEWS2, the naive baseline's view ------------------------------------------------------------------------

_SCORED = (Metric.HEART_RATE, Metric.SPO2, Metric.RESP_RATE, Metric.TEMPERATURE, Metric.BP_SYSTOLIC,
           Metric.CONSCIOUSNESS, Metric.O2_FLOW)


class RawNews2:
    """NEWS2 on one patient's raw readings, last value of each vital carried forward (see the module docstring).

    ``window_ms``: start of the patient's episode window (``onset - tolerance``), or None (stable, or unknown).
    """

    def __init__(self, window_ms: int | None = None, *, plausible_only: bool = False, series: bool = False) -> None:
        self.window_ms = window_ms
        self.plausible_only = plausible_only
        self._latest: dict[Metric, tuple[int, float]] = {}
        self._score = 0
        self.crossings: list[int] = []
        """Times at which the score went from below ``RAW_THRESHOLD`` to at or above it."""
        self.first_reach: int | None = None
        """First time at or above the threshold, at or after ``window_ms`` (any time if it is None)."""
        self.series: dict[int, int] | None = {} if series else None
        """With ``series``: the highest score in each minute (minute start ms -> score), for plots."""

    @property
    def score(self) -> int:
        return self._score

    def add(self, reading: Reading) -> None:
        metric = reading.metric
        if metric not in _SCORED:
            return
        spec = CATALOGUE.get(metric)
        if self.plausible_only and spec is not None and not spec.plausible[0] <= reading.value <= spec.plausible[1]:
            return
        held = self._latest.get(metric)
        if held is not None and reading.measured_at < held[0]:
            return  # an older reading arriving late does not replace a newer one
        self._latest[metric] = (reading.measured_at, reading.value)
        self._rescore(reading.measured_at)

    def _value(self, metric: Metric) -> float | None:
        held = self._latest.get(metric)
        return None if held is None else held[1]

    def _rescore(self, t: int) -> None:
        acvpu = self._value(Metric.CONSCIOUSNESS)
        o2 = self._value(Metric.O2_FLOW)
        total = score(Inputs(
            rr=self._value(Metric.RESP_RATE), spo2=self._value(Metric.SPO2),
            on_oxygen=None if o2 is None else o2 > 0, sbp=self._value(Metric.BP_SYSTOLIC),
            pulse=self._value(Metric.HEART_RATE), temp=self._value(Metric.TEMPERATURE),
            acvpu=None if acvpu is None else ACVPU[int(acvpu)],
        )).total
        if total >= RAW_THRESHOLD:
            if self._score < RAW_THRESHOLD:
                self.crossings.append(t)
            if (self.window_ms is None or t >= self.window_ms) and (self.first_reach is None or t < self.first_reach):
                self.first_reach = t
        self._score = total
        if self.series is not None:
            minute = t - t % MS_PER_MIN
            self.series[minute] = max(self.series.get(minute, 0), total)


# --- the accounting ----------------------------------------------------------------------------------------------


def clinical_alert_times(events: Iterable[AlertEvent], level: Level = ALERT_LEVEL) -> list[int]:
    """Times of one patient's clinical alerts at ``level`` or above: raised there, or escalated to a higher
    level that is at least ``level`` (worsening); ``events`` in publication order."""
    current: dict[str, Level] = {}
    out: list[int] = []
    for e in events:
        if e.condition is not Condition.CLINICAL:
            continue
        if e.kind is Kind.RESOLVED:
            current.pop(e.alert_id, None)
            continue
        if e.kind not in (Kind.RAISED, Kind.ESCALATED):
            continue
        before = current.get(e.alert_id, Level.NONE)
        if e.level >= level and e.level > before:
            out.append(e.at)
        current[e.alert_id] = max(before, e.level)
    return out


@dataclass(frozen=True, slots=True)
class PatientRun:
    """What one system did for one patient, with the truth: the input of ``account``."""

    patient_id: str
    start_ms: int
    end_ms: int
    onset_ms: int | None
    """None for a stable patient (and for every patient of a recording, whose truth is unknown)."""
    alerts: tuple[int, ...]
    """Times of the system's clinical alerts (``clinical_alert_times``, or the baseline's crossings)."""
    all_alerts: int
    """Every alert the system raised for this patient, of any condition and level."""
    raw_reach_ms: int | None
    """When raw NEWS2 reached 5 in the episode (``RawNews2.first_reach``); None if it never did."""


@dataclass(frozen=True, slots=True)
class Episode:
    patient_id: str
    onset_ms: int
    alert_ms: int | None
    raw_reach_ms: int | None

    @property
    def lead_onset_min(self) -> float | None:
        return None if self.alert_ms is None else (self.onset_ms - self.alert_ms) / MS_PER_MIN

    @property
    def lead_raw_min(self) -> float | None:
        if self.alert_ms is None or self.raw_reach_ms is None:
            return None
        return (self.raw_reach_ms - self.alert_ms) / MS_PER_MIN


@dataclass(frozen=True, slots=True)
class Figures:
    patients: int
    patient_days: float
    episodes: tuple[Episode, ...]
    false_alerts: int
    false_exposure_days: float
    clinical_alerts: int
    all_alerts: int
    false_by_patient: tuple[tuple[str, int], ...] = ()
    """Patients with false alerts and how many, most first."""

    @property
    def detected(self) -> int:
        return sum(1 for e in self.episodes if e.alert_ms is not None)

    @property
    def sensitivity(self) -> float | None:
        return self.detected / len(self.episodes) if self.episodes else None

    @property
    def lead_onset_min(self) -> list[float]:
        return [x for e in self.episodes if (x := e.lead_onset_min) is not None]

    @property
    def lead_raw_min(self) -> list[float]:
        return [x for e in self.episodes if (x := e.lead_raw_min) is not None]

    @property
    def false_per_patient_day(self) -> float | None:
        return self.false_alerts / self.false_exposure_days if self.false_exposure_days > 0 else None

    @property
    def clinical_per_patient_day(self) -> float | None:
        return self.clinical_alerts / self.patient_days if self.patient_days > 0 else None

    @property
    def all_per_patient_day(self) -> float | None:
        return self.all_alerts / self.patient_days if self.patient_days > 0 else None


def _median(xs: Sequence[float]) -> float | None:
    return statistics.median(xs) if xs else None


def account(runs: Iterable[PatientRun], tolerance_ms: int = EARLY_TOLERANCE_MS) -> Figures:
    """Episodes, detections, lead times and false alerts, as defined in the module docstring."""
    episodes: list[Episode] = []
    by_patient: Counter[str] = Counter()
    false_alerts = clinical = all_alerts = n = 0
    exposure_ms = monitored_ms = 0
    for r in runs:
        n += 1
        monitored_ms += r.end_ms - r.start_ms
        clinical += len(r.alerts)
        all_alerts += r.all_alerts
        if r.onset_ms is None or r.onset_ms >= r.end_ms:
            false_alerts += len(r.alerts)
            by_patient[r.patient_id] += len(r.alerts)
            exposure_ms += r.end_ms - r.start_ms
            continue
        window = r.onset_ms - tolerance_ms
        early = sum(1 for t in r.alerts if t < window)
        false_alerts += early
        by_patient[r.patient_id] += early
        exposure_ms += max(window - r.start_ms, 0)
        inside = [t for t in r.alerts if window <= t < r.end_ms]
        episodes.append(Episode(r.patient_id, r.onset_ms, min(inside) if inside else None, r.raw_reach_ms))
    worst = tuple((pid, k) for pid, k in sorted(by_patient.items(), key=lambda kv: (-kv[1], kv[0])) if k)
    return Figures(n, monitored_ms / MS_PER_DAY, tuple(episodes), false_alerts, exposure_ms / MS_PER_DAY,
                   clinical, all_alerts, worst)


def _r(x: float | None, digits: int = 3) -> float | None:
    return None if x is None else round(x, digits)


def figures_json(f: Figures) -> dict[str, Any]:
    lead_onset, lead_raw = f.lead_onset_min, f.lead_raw_min
    return {
        "patients": f.patients,
        "patient_days": _r(f.patient_days),
        "episodes": len(f.episodes),
        "detected": f.detected,
        "sensitivity": _r(f.sensitivity),
        "median_lead_vs_onset_min": _r(_median(lead_onset), 1),
        "median_lead_vs_raw_news2_5_min": _r(_median(lead_raw), 1),
        "lead_vs_raw_news2_5_quartiles_min": _quartiles(lead_raw),
        "false_alerts": f.false_alerts,
        "false_exposure_patient_days": _r(f.false_exposure_days),
        "false_alerts_per_patient_day": _r(f.false_per_patient_day),
        "clinical_alerts": f.clinical_alerts,
        "clinical_alerts_per_patient_day": _r(f.clinical_per_patient_day),
        "all_alerts": f.all_alerts,
        "all_alerts_per_patient_day": _r(f.all_per_patient_day),
        "missed": [e.patient_id for e in f.episodes if e.alert_ms is None],
        "patients_with_false_alerts": len(f.false_by_patient),
        "false_alerts_by_patient_top": dict(f.false_by_patient[:10]),
    }


def _quartiles(xs: Sequence[float]) -> list[float] | None:
    if len(xs) < 2:
        return None
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return [round(q[0], 1), round(q[2], 1)]


def targets(twinmon: Figures, baseline: Figures) -> dict[str, Any]:
    """Each target with the figure it is judged on and whether it is met."""
    sens, base_sens = twinmon.sensitivity, baseline.sensitivity
    lead = _median(twinmon.lead_raw_min)
    fpd, base_fpd = twinmon.false_per_patient_day, baseline.false_per_patient_day
    if fpd is None or base_fpd is None:
        ratio = None
    else:
        ratio = math.inf if fpd == 0 and base_fpd > 0 else (base_fpd / fpd if fpd > 0 else None)
    factor = TARGETS["fewer_false_than_baseline_factor"]
    return {
        "sensitivity": {"target": f">= {TARGETS['sensitivity_min']}", "value": _r(sens),
                        "met": sens is not None and sens >= TARGETS["sensitivity_min"]},
        "median_lead_vs_raw_news2_5_min": {"target": f">= {TARGETS['median_lead_raw5_min_min']:g}",
                                           "value": _r(lead, 1),
                                           "met": lead is not None and lead >= TARGETS["median_lead_raw5_min_min"]},
        "false_alerts_per_patient_day": {"target": f"<= {TARGETS['false_per_patient_day_max']}", "value": _r(fpd),
                                         "met": fpd is not None and fpd <= TARGETS["false_per_patient_day_max"]},
        "fewer_false_alerts_than_baseline": {
            "target": f">= {factor:g}x fewer, sensitivity >= baseline's",
            "value": None if ratio is None else ("inf" if math.isinf(ratio) else round(ratio, 1)),
            "met": ratio is not None and ratio >= factor and sens is not None and base_sens is not None
            and sens >= base_sens,
        },
    }


# --- running a cohort through the processor ----------------------------------------------------------------------


@dataclass(slots=True)
class _Timeline:
    twin: list[tuple[int, int, float, float]] = field(default_factory=list)
    """(t, NEWS2 now on the twin, p(5, horizon), p(7, horizon)) at every sweep, every 30 s."""


@dataclass(slots=True)
class _Collected:
    """What one pass over a stream collected, per patient."""

    events: dict[str, list[AlertEvent]] = field(default_factory=dict)
    raw: dict[str, RawNews2] = field(default_factory=dict)
    plausible: dict[str, RawNews2] = field(default_factory=dict)
    truth: dict[str, RawNews2] = field(default_factory=dict)
    """NEWS2 on the simulated patients' true values (noise-free physiology), as a diagnostic."""
    timelines: dict[str, _Timeline] = field(default_factory=dict)
    first_ms: dict[str, int] = field(default_factory=dict)
    last_ms: dict[str, int] = field(default_factory=dict)
    samples: dict[str, list[tuple[int, int, float, float]]] = field(default_factory=dict)
    """With ``sample_all``: every patient's (t, NEWS2 now, p(5, horizon), p(7, horizon)) at every sweep."""
    risks: dict[str, list[tuple[float, ...]]] = field(default_factory=dict)
    """With ``record_risk``: every clinical evaluation's risk (``RecordingProcessor``), for ``evaluation.replay``."""
    messages: int = 0
    dead_letters: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    def merge(self, other: _Collected) -> None:
        self.events.update(other.events)
        self.raw.update(other.raw)
        self.plausible.update(other.plausible)
        self.truth.update(other.truth)
        self.timelines.update(other.timelines)
        self.first_ms.update(other.first_ms)
        self.last_ms.update(other.last_ms)
        self.samples.update(other.samples)
        self.risks.update(other.risks)
        self.messages += other.messages
        self.dead_letters += other.dead_letters
        self.outcomes.update(other.outcomes)


Item = tuple[int, RawMessage, Reading | None, float | None]
"""(processor clock ms, message, the decoded reading if it is valid, its true value if known)."""


class RecordingProcessor(BatchProcessor):
    """The worker's processor, recording what every evaluation's risk was (``evaluation.replay.risk_row``) so that
    the clinical alerts of other ``[policy]`` settings can be replayed without rerunning the twin."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.risks: dict[str, list[tuple[float, ...]]] = {}

    def _decide(self, pid: str, twin: Twin, t: int, r: Risk, result: BatchResult) -> bytes:
        self.risks.setdefault(pid, []).append(risk_row(t, r))
        return super()._decide(pid, twin, t, r, result)


async def _run(items: Iterable[Item], evaluation: AlertingConfig, windows: Mapping[str, int | None],
               traced: Sequence[str], *, sample_all: bool = False, record_risk: bool = False) -> _Collected:
    out = _Collected()

    async def publish(events: Sequence[AlertEvent]) -> None:
        for e in events:
            out.events.setdefault(e.patient_id, []).append(e)

    proc = (RecordingProcessor if record_risk else BatchProcessor)(
        InMemoryTwinStore(history_length=1), publish=publish, evaluation=evaluation)
    if isinstance(proc, RecordingProcessor):
        out.risks = proc.risks
    horizon = evaluation.policy.predicted_horizon_min
    traced_set = set(traced)
    batch: list[RawMessage] = []

    async def flush(now_ms: int) -> None:
        if not batch:
            return
        result = await proc.process(batch, now_ms)
        out.messages += len(batch)
        out.dead_letters += len(result.dead_letters)
        out.outcomes.update({o.value: n for o, n in result.outcomes.items()})
        batch.clear()

    def trace(now_ms: int) -> None:
        if sample_all:
            for pid in out.raw:
                twin = proc.twin(pid)
                if twin is not None and twin.vitals:
                    r = risk(twin, proc.profile(pid), now_ms, evaluation.risk)
                    out.samples.setdefault(pid, []).append((now_ms, r.now.total, r.p(5, horizon), r.p(7, horizon)))
        for pid in traced:
            twin = proc.twin(pid)
            if twin is not None and twin.vitals:
                r = risk(twin, proc.profile(pid), now_ms, evaluation.risk)
                out.timelines.setdefault(pid, _Timeline()).twin.append(
                    (now_ms, r.now.total, r.p(5, horizon), r.p(7, horizon)))

    next_sweep: int | None = None
    clock = 0
    for clock_ms, msg, reading, truth in items:
        clock = max(clock, clock_ms)
        if next_sweep is None:  # on a fixed grid of the clock, whichever patients this pass has
            next_sweep = (clock // SWEEP_EVERY_MS + 1) * SWEEP_EVERY_MS
        while clock >= next_sweep:
            await flush(next_sweep)
            await proc.sweep(next_sweep)
            trace(next_sweep)
            next_sweep += SWEEP_EVERY_MS
        batch.append(msg)
        if reading is not None:
            pid = reading.patient_id
            if pid not in out.raw:
                window = windows.get(pid)
                out.raw[pid] = RawNews2(window, series=pid in traced_set)
                out.plausible[pid] = RawNews2(window, plausible_only=True)
                out.first_ms[pid] = reading.measured_at
            out.raw[pid].add(reading)
            out.plausible[pid].add(reading)
            if truth is not None:
                if pid not in out.truth:
                    out.truth[pid] = RawNews2(windows.get(pid))
                out.truth[pid].add(replace(reading, value=truth))
            out.last_ms[pid] = max(out.last_ms.get(pid, 0), reading.measured_at)
        if len(batch) >= BATCH_MAX:
            await flush(clock)
    await flush(clock)
    return out


def _index(patient_id: str) -> int:
    return int(patient_id.rsplit("-", 1)[1])


def _simulated_items(patients: int, duration_s: float, seed: int, deteriorating_share: float, rate: float,
                     shard: int, shards: int) -> Iterator[Item]:
    stream = simulate_with_truth(patients, duration_s, rate=rate, seed=seed, start_ms=START_MS,
                                 deteriorating_share=deteriorating_share)
    for offset, (delivered_s, reading, truth) in enumerate(stream):
        if shards > 1 and _index(reading.patient_id) % shards != shard:
            continue
        msg = RawMessage(0, offset, reading.patient_id.encode(), encode(reading))
        yield START_MS + round(delivered_s * 1000), msg, reading, truth


@dataclass(frozen=True, slots=True)
class _ShardJob:
    patients: int
    duration_s: float
    seed: int
    deteriorating_share: float
    rate: float
    evaluation: AlertingConfig
    windows: dict[str, int | None]
    traced: tuple[str, ...]
    shard: int
    shards: int


def _run_shard(job: _ShardJob) -> _Collected:
    items = _simulated_items(job.patients, job.duration_s, job.seed, job.deteriorating_share, job.rate, job.shard,
                             job.shards)
    return asyncio.run(_run(items, job.evaluation, job.windows, job.traced))


def _default_workers(patients: int) -> int:
    return max(1, min(os.cpu_count() or 1, patients // 10))


def evaluate_cohort(
    patients: int,
    duration_s: float,
    seed: int,
    deteriorating_share: float,
    evaluation: AlertingConfig | None = None,
    *,
    rate: float = BASE_RATE,
    workers: int | None = None,
    tolerance_ms: int = EARLY_TOLERANCE_MS,
) -> dict[str, Any]:
    """Run the simulated cohort through the worker's processing and account for it against the truth.

    ``rate`` is the simulator's readings per second per patient; the default is the devices' own cadences
    (heart rate every 5 s from the wrist and 10 s from the patch, SpO2 every 10 s...). ``workers`` processes
    share the patients (default: one per CPU); the result does not depend on it. Returns a JSON-able dict.
    """
    if patients < 1 or duration_s <= 0:
        raise ValueError("patients and duration must be positive")
    evaluation = evaluation or AlertingConfig()
    started = time.perf_counter()
    truth = cohort_truth(patients, duration_s, seed, deteriorating_share)
    onsets = {pid: None if o is None else START_MS + round(o * 1000) for pid, (o, _ramp) in truth.items()}
    windows = {pid: None if o is None else o - tolerance_ms for pid, o in onsets.items()}
    traced = _pick_traced(onsets)
    n = workers or _default_workers(patients)
    jobs = [_ShardJob(patients, duration_s, seed, deteriorating_share, rate, evaluation, windows, traced, k, n)
            for k in range(n)]
    collected = _Collected()
    if n == 1:
        collected.merge(_run_shard(jobs[0]))
    else:
        with ProcessPoolExecutor(n) as pool:
            for part in pool.map(_run_shard, jobs):
                collected.merge(part)
    end_ms = START_MS + round(duration_s * 1000)
    result = _results(collected, onsets, {pid: (START_MS, end_ms) for pid in truth}, tolerance_ms)
    result["cohort"] = {
        "kind": "simulated", "patients": patients, "hours": round(duration_s / 3600, 3), "seed": seed,
        "deteriorating_share": deteriorating_share, "rate_per_s": round(rate, 4), "start_ms": START_MS,
        "deteriorating": sum(1 for o in onsets.values() if o is not None),
        "ramp_min": _ramp_summary([r for o, r in truth.values() if o is not None]),
    }
    result["runtime_s"] = round(time.perf_counter() - started, 1)
    result["workers"] = n
    result["settings"] = settings_json(evaluation)
    result["policy_id"] = policy_id(evaluation)
    return result


def evaluate_recorded(path: Path | str, evaluation: AlertingConfig | None = None) -> dict[str, Any]:
    """Run a recorded file of ``vitals`` events (JSON lines, in delivery order, as ``twinmon simulate --out``
    writes) through the worker's processing. A recording has no truth: alert burden only."""
    evaluation = evaluation or AlertingConfig()
    started = time.perf_counter()

    def items() -> Iterator[Item]:
        # Ingest times from the recording clock (simulation.replay), as ``twinmon replay`` has them: a reading
        # stamped ahead of the recording is dead-lettered here as the worker would dead-letter it.
        clock = 0
        with Path(path).open("rb") as fh:
            for offset, (line, ingest) in enumerate(recording_clock(fh)):
                line = line.strip()
                if not line:
                    continue
                decoded = decode(line, None, ingest)
                reading = decoded if not isinstance(decoded, Rejected) else None
                clock = max(clock, ingest)
                key = reading.patient_id.encode() if reading is not None else None
                yield clock, RawMessage(0, offset, key, line, ingest), reading, None

    collected = asyncio.run(_run(items(), evaluation, {}, ()))
    spans = {pid: (collected.first_ms[pid], collected.last_ms[pid]) for pid in collected.raw}
    result = _results(collected, dict.fromkeys(spans), spans, EARLY_TOLERANCE_MS)
    result["cohort"] = {"kind": "recorded", "file": str(path), "patients": len(spans),
                        "note": "no truth: sensitivity and lead times are not defined, alert burden only"}
    result["runtime_s"] = round(time.perf_counter() - started, 1)
    result["workers"] = 1
    result["settings"] = settings_json(evaluation)
    result["policy_id"] = policy_id(evaluation)
    return result


def _pick_traced(onsets: Mapping[str, int | None]) -> tuple[str, ...]:
    ordered = sorted(onsets)
    worse = [p for p in ordered if onsets[p] is not None][: TRACED - 1]
    stable = [p for p in ordered if onsets[p] is None][: TRACED - len(worse)]
    return tuple(worse + stable)


def _ramp_summary(ramps_s: Sequence[float]) -> list[float] | None:
    if not ramps_s:
        return None
    return [round(min(ramps_s) / 60, 1), round(statistics.median(ramps_s) / 60, 1), round(max(ramps_s) / 60, 1)]


def _is_new(e: AlertEvent) -> bool:
    """A notification of something new or worse: raised, or escalated for worsening or at the end of an exertion
    hold (to the higher level it kept back)."""
    head = reason_head(e.reason)
    return e.kind is Kind.RAISED or (e.kind is Kind.ESCALATED and (head == WORSENED or head.startswith(HOLD_ENDED)))


def _event_kinds(events: Iterable[AlertEvent]) -> Counter[str]:
    kinds: Counter[str] = Counter()
    for e in events:
        reason = f" ({reason_head(e.reason)})" if e.kind is Kind.ESCALATED else ""
        kinds[f"{e.kind.value} {e.condition.value} {e.level.name.lower()}{reason}"] += 1
    return kinds


def _after(t: int | None, onset_ms: int) -> float | None:
    return None if t is None else round((t - onset_ms) / MS_PER_MIN, 1)


def _results(c: _Collected, onsets: Mapping[str, int | None], spans: Mapping[str, tuple[int, int]],
             tolerance_ms: int) -> dict[str, Any]:
    pids = sorted(spans)
    runs: dict[str, list[PatientRun]] = {"twinmon": [], "baseline": [], "baseline_plausible": []}
    kinds: Counter[str] = Counter()
    for pid in pids:
        start, end = spans[pid]
        onset = onsets.get(pid)
        events = c.events.get(pid, [])
        kinds.update(_event_kinds(events))
        raw, plausible = c.raw.get(pid) or RawNews2(), c.plausible.get(pid) or RawNews2()
        reach = raw.first_reach
        runs["twinmon"].append(PatientRun(pid, start, end, onset, tuple(clinical_alert_times(events)),
                                          sum(1 for e in events if _is_new(e)), reach))
        for name, monitor in (("baseline", raw), ("baseline_plausible", plausible)):
            runs[name].append(PatientRun(pid, start, end, onset, tuple(monitor.crossings), len(monitor.crossings),
                                         reach))
    figures = {name: account(rs, tolerance_ms) for name, rs in runs.items()}
    true_reach = {pid: m.first_reach for pid, m in c.truth.items()}
    episodes = []
    for i, ep in enumerate(figures["twinmon"].episodes):
        row: dict[str, Any] = {
            "patient_id": ep.patient_id,
            "onset_min": round((ep.onset_ms - spans[ep.patient_id][0]) / MS_PER_MIN, 1),
            "raw_news2_5_after_onset_min": (None if ep.raw_reach_ms is None
                                            else round((ep.raw_reach_ms - ep.onset_ms) / MS_PER_MIN, 1)),
            "true_news2_5_after_onset_min": _after(true_reach.get(ep.patient_id), ep.onset_ms),
        }
        for name, f in figures.items():
            row[f"{name}_alert_after_onset_min"] = _after(f.episodes[i].alert_ms, ep.onset_ms)
        episodes.append(row)
    leads_true = {name: [t - a for e in episodes if (a := e[f"{name}_alert_after_onset_min"]) is not None
                         and (t := e["true_news2_5_after_onset_min"]) is not None] for name in figures}
    twin, base = figures["twinmon"], figures["baseline"]
    low = sum(len(clinical_alert_times(c.events.get(pid, []), Level.LOW)) for pid in pids)
    days = sum(end - start for start, end in spans.values()) / 86_400_000
    prompts = {group: sum(1 for pid in pids if (onsets.get(pid) is None) == (group == "stable")
                          for e in c.events.get(pid, [])
                          if e.condition is Condition.UNCONFIRMED and e.kind is Kind.RAISED)
               for group in ("stable", "deteriorating")}
    out: dict[str, Any] = {
        "definitions": {
            "alert_level": ALERT_LEVEL.name.lower(), "early_tolerance_min": tolerance_ms / MS_PER_MIN,
            "raw_threshold": RAW_THRESHOLD, "see": "evaluation/cohort.py module docstring",
        },
        "twinmon": figures_json(twin),
        "baseline": figures_json(base),
        "baseline_plausible": figures_json(figures["baseline_plausible"]),
        "targets": targets(twin, base) if any(o is not None for o in onsets.values()) else None,
        "twinmon_clinical_alerts_at_low_or_above": low,
        "twinmon_remeasure_prompts": {**prompts, "per_patient_day": _r(sum(prompts.values()) / days) if days else None},
        "diagnostic_median_lead_vs_true_news2_5_min": {
            name: _r(_median(xs), 1) for name, xs in leads_true.items()} if c.truth else None,
        "twinmon_events": dict(sorted(kinds.items())),
        "episodes": episodes,
        "messages": c.messages,
        "dead_letters": c.dead_letters,
        "twin_outcomes": dict(sorted(c.outcomes.items())),
        "timelines": _timelines_json(c, onsets, spans),
    }
    return out


def _timelines_json(c: _Collected, onsets: Mapping[str, int | None],
                    spans: Mapping[str, tuple[int, int]]) -> list[dict[str, Any]]:
    out = []
    for pid, tl in sorted(c.timelines.items()):
        start = spans[pid][0]

        def m(t: int, start: int = start) -> float:
            return round((t - start) / MS_PER_MIN, 2)

        raw = c.raw[pid].series or {}
        onset = onsets.get(pid)
        out.append({
            "patient_id": pid,
            "onset_min": None if onset is None else m(onset),
            "raw_news2": [[m(t), s] for t, s in sorted(raw.items())],
            "twin": [[m(t), n, round(p5, 4), round(p7, 4)] for t, n, p5, p7 in tl.twin],
            "alerts": [[m(e.at), e.kind.value, e.condition.value, e.level.name.lower()]
                       for e in c.events.get(pid, []) if _is_new(e) or e.kind is Kind.RESOLVED],
            "baseline_alerts": [m(t) for t in c.raw[pid].crossings],
        })
    return out


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


# --- comparison --------------------------------------------------------------------------------------------------

_ROWS: tuple[tuple[str, str, str], ...] = (
    # (label, system, key in figures_json)
    ("episodes detected", "twinmon", "detected"),
    ("sensitivity", "twinmon", "sensitivity"),
    ("median lead vs true onset (min)", "twinmon", "median_lead_vs_onset_min"),
    ("median lead vs raw NEWS2 reaching 5 (min)", "twinmon", "median_lead_vs_raw_news2_5_min"),
    ("false alerts", "twinmon", "false_alerts"),
    ("false alerts per patient-day", "twinmon", "false_alerts_per_patient_day"),
    ("clinical alerts (>= medium) per patient-day", "twinmon", "clinical_alerts_per_patient_day"),
    ("all alerts per patient-day", "twinmon", "all_alerts_per_patient_day"),
)


def compare(a: tuple[str, AlertingConfig], b: tuple[str, AlertingConfig],
            run: Callable[[AlertingConfig], dict[str, Any]]) -> dict[str, Any]:
    """Run the same cohort (``run``) under two configurations; both results and their differences."""
    ra, rb = run(a[1]), run(b[1])
    rows = []
    for label, system, key in _ROWS:
        va, vb = ra[system][key], rb[system][key]
        diff = round(vb - va, 3) if isinstance(va, int | float) and isinstance(vb, int | float) else None
        rows.append({"metric": label, "a": va, "b": vb, "b_minus_a": diff})
    sa, sb = _flatten(ra["settings"]), _flatten(rb["settings"])
    changed = [{"setting": k, "a": sa.get(k), "b": sb.get(k)} for k in sorted(set(sa) | set(sb))
               if sa.get(k) != sb.get(k)]
    return {"a": {"name": a[0], "result": ra}, "b": {"name": b[0], "result": rb}, "rows": rows,
            "settings_changed": changed, "cohort": ra["cohort"]}


# --- the report --------------------------------------------------------------------------------------------------


def _fmt(v: object) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


_TABLE: tuple[tuple[str, str], ...] = (
    ("deterioration episodes", "episodes"),
    ("detected", "detected"),
    ("sensitivity", "sensitivity"),
    ("median lead time vs true onset, min", "median_lead_vs_onset_min"),
    ("median lead time vs raw NEWS2 reaching 5, min", "median_lead_vs_raw_news2_5_min"),
    ("lead time vs raw NEWS2 5, quartiles, min", "lead_vs_raw_news2_5_quartiles_min"),
    ("false alerts", "false_alerts"),
    ("false-alert exposure, patient-days", "false_exposure_patient_days"),
    ("false alerts per patient-day", "false_alerts_per_patient_day"),
    ("clinical alerts (>= medium) per patient-day", "clinical_alerts_per_patient_day"),
    ("all alerts per patient-day", "all_alerts_per_patient_day"),
)


def figures_table(result: Mapping[str, Any]) -> str:
    """The Markdown table of twinmon against both baselines."""
    lines = ["| | twinmon | naive baseline (raw NEWS2 >= 5) | baseline, plausible readings only |",
             "|---|---:|---:|---:|"]
    for label, key in _TABLE:
        cells = [_fmt(result[s][key]) for s in ("twinmon", "baseline", "baseline_plausible")]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    return "\n".join(lines)


def _targets_md(t: Mapping[str, Any] | None) -> str:
    if t is None:
        return "No truth in this cohort: targets are not judged.\n"
    lines = ["| target | required | twinmon | met |", "|---|---|---:|---|"]
    for name, v in t.items():
        lines.append(f"| {name.replace('_', ' ')} | {v['target']} | {_fmt(v['value'])} | "
                     f"{'yes' if v['met'] else '**NO**'} |")
    return "\n".join(lines) + "\n"


def _concentration_md(t: Mapping[str, Any]) -> list[str]:
    top = t.get("false_alerts_by_patient_top") or {}
    if not top:
        return []
    listed = ", ".join(f"{pid} {k}" for pid, k in top.items())
    return [f"twinmon's {t['false_alerts']} false alerts came from {t['patients_with_false_alerts']} of "
            f"{t['patients']} patients (most: {listed}).", ""]


def _diagnostic_md(d: Mapping[str, Any] | None) -> list[str]:
    if not d:
        return []
    return ["Diagnostic, not a target: median lead time vs the patient's TRUE NEWS2 (noise-free simulated "
            f"physiology) reaching 5: twinmon {_fmt(d['twinmon'])} min, naive baseline {_fmt(d['baseline'])} min, "
            f"plausible-only baseline {_fmt(d['baseline_plausible'])} min.", ""]


def _cohort_md(c: Mapping[str, Any]) -> str:
    if c["kind"] == "recorded":
        return f"Recorded events from `{c['file']}`: {c['patients']} patients. {c['note']}."
    ramp = c["ramp_min"]
    ramp_txt = f"; ramps {ramp[0]}-{ramp[2]} min (median {ramp[1]})" if ramp else ""
    return (f"Simulated cohort: {c['patients']} patients x {c['hours']:g} h, seed {c['seed']}, "
            f"{c['deteriorating']} deteriorating (share {c['deteriorating_share']:g}){ramp_txt}; "
            f"{c['rate_per_s']:g} readings/s per patient, with motion artefacts, probe-off zeros, wrist dropouts "
            "and buffered late uploads.")


def _prompts_md(p: Mapping[str, Any] | None) -> list[str]:
    if not p:
        return []
    return [f"Re-measure prompts (`unconfirmed` alerts raised): {p['stable']} on stable patients, "
            f"{p['deteriorating']} on deteriorating ones; {_fmt(p['per_patient_day'])} per patient-day.", ""]


def write_report(result: Mapping[str, Any], out_dir: Path | str, title: str = "twinmon evaluation") -> list[Path]:
    """``report.md``, ``report.json`` and the PNG plots in ``out_dir``; returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "report.json"]
    written[0].write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    plots = [_plot_leads(result, out / "lead_times.png"), _plot_burden(result, out / "alert_burden.png")]
    if result.get("timelines"):
        plots.append(_plot_timelines(result, out / "timelines.png"))
    written.extend(plots)
    md = [
        f"# {title}", "",
        _cohort_md(result["cohort"]), "",
        f"Runtime {result['runtime_s']} s ({result['workers']} process(es)); {result['messages']} messages, "
        f"{result['dead_letters']} dead-lettered. Definitions: `evaluation/cohort.py` (clinical alert = "
        f"{result['definitions']['alert_level']} or above; early tolerance "
        f"{result['definitions']['early_tolerance_min']:g} min).", "",
        "## Figures", "", figures_table(result), "",
        *_prompts_md(result.get("twinmon_remeasure_prompts")),
        "## Targets", "", _targets_md(result.get("targets")),
        *_concentration_md(result["twinmon"]),
        *_diagnostic_md(result.get("diagnostic_median_lead_vs_true_news2_5_min")),
        "## Plots", "",
        "![lead times](lead_times.png)", "", "![alert burden](alert_burden.png)", "",
    ]
    if result.get("timelines"):
        md += ["![timelines](timelines.png)", ""]
    md += ["## twinmon alert events", "", "| event | count |", "|---|---:|"]
    md += [f"| {k} | {v} |" for k, v in result["twinmon_events"].items()]
    if result.get("episodes"):
        md += ["", "## Episodes (minutes after onset; negative = before)", "",
               "| patient | onset min | raw NEWS2 5 | true NEWS2 5 | twinmon | baseline | baseline plausible |",
               "|---|---:|---:|---:|---:|---:|---:|"]
        for e in result["episodes"]:
            md.append(f"| {e['patient_id']} | {e['onset_min']} | {_fmt(e['raw_news2_5_after_onset_min'])} | "
                      f"{_fmt(e['true_news2_5_after_onset_min'])} | "
                      f"{_fmt(e['twinmon_alert_after_onset_min'])} | {_fmt(e['baseline_alert_after_onset_min'])} | "
                      f"{_fmt(e['baseline_plausible_alert_after_onset_min'])} |")
    md += ["", "## Settings", "", f"Policy id `{result.get('policy_id', 'n/a')}` (docs/policy.md).", "", "```json",
           orjson.dumps(result["settings"], option=orjson.OPT_INDENT_2).decode(), "```", ""]
    (out / "report.md").write_text("\n".join(md), encoding="utf-8")
    written.insert(0, out / "report.md")
    return written


def write_comparison(cmp: Mapping[str, Any], out_dir: Path | str) -> list[Path]:
    """``compare.md``, ``compare.json``, ``compare.png``, and each run's full report in ``a/`` and ``b/``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for side in ("a", "b"):
        written += write_report(cmp[side]["result"], out / side, f"twinmon evaluation: {cmp[side]['name']}")
    summary = {k: v for k, v in cmp.items() if k not in ("a", "b")}
    for side in ("a", "b"):
        run = cmp[side]["result"]
        summary[side] = {"name": cmp[side]["name"], "policy_id": run.get("policy_id"), "settings": run["settings"]}
    (out / "compare.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    written.append(out / "compare.json")
    written.append(_plot_compare(cmp, out / "compare.png"))
    na, nb = cmp["a"]["name"], cmp["b"]["name"]
    md = [f"# Virtual trial: {na} vs {nb}", "", _cohort_md(cmp["cohort"]), "",
          "Same cohort, same readings, in the same order; only the configuration differs.", "",
          f"| metric | A: {na} | B: {nb} | B - A |", "|---|---:|---:|---:|"]
    md += [f"| {r['metric']} | {_fmt(r['a'])} | {_fmt(r['b'])} | {_fmt(r['b_minus_a'])} |" for r in cmp["rows"]]
    ids = [cmp[side]["result"].get("policy_id", "n/a") for side in ("a", "b")]
    md += ["", "## Settings that differ", "", "| setting | A | B |", "|---|---|---|",
           f"| policy id | {ids[0]} | {ids[1]} |"]
    md += [f"| {s['setting']} | {_fmt(s['a'])} | {_fmt(s['b'])} |" for s in cmp["settings_changed"]]
    if not cmp["settings_changed"]:
        md.append("| (none) | | |")
    md += ["", "![comparison](compare.png)", "", "Full reports: [A](a/report.md), [B](b/report.md).", ""]
    (out / "compare.md").write_text("\n".join(md), encoding="utf-8")
    written.insert(0, out / "compare.md")
    return written


def _figure(width: float, height: float) -> Any:
    require_charts()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _lead_lists(result: Mapping[str, Any], system: str, key: str) -> list[float]:
    col = f"{system}_alert_after_onset_min"
    out = []
    for e in result.get("episodes", []):
        after = e[col]
        if after is None:
            continue
        if key == "onset":
            out.append(-after)
        elif e["raw_news2_5_after_onset_min"] is not None:
            out.append(e["raw_news2_5_after_onset_min"] - after)
    return out


_SYSTEMS = (("twinmon", "tab:blue"), ("baseline", "tab:red"), ("baseline_plausible", "tab:orange"))


def _plot_leads(result: Mapping[str, Any], path: Path) -> Path:
    fig = _figure(12.0, 4.2)
    axes = fig.subplots(1, 2)
    for ax, key, label in ((axes[0], "onset", "lead time vs true onset, min (negative = after onset)"),
                           (axes[1], "raw", "lead time vs raw NEWS2 reaching 5, min (positive = earlier)")):
        data = [(s, c, _lead_lists(result, s, key)) for s, c in _SYSTEMS]
        values = [x for _, _, xs in data for x in xs]
        if values:
            lo, hi = min(values), max(values)
            bins = [lo + (hi - lo + 1e-9) * i / 24 for i in range(25)]
            for s, c, xs in data:
                if xs:
                    ax.hist(xs, bins=bins, alpha=0.5, color=c, label=f"{s} (n={len(xs)}, median "
                            f"{statistics.median(xs):.0f})")
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no detected episodes", ha="center", transform=ax.transAxes)
        ax.axvline(0, color="black", linewidth=0.8)
        if key == "raw":
            ax.axvline(TARGETS["median_lead_raw5_min_min"], color="green", linestyle="--", linewidth=0.8,
                       label="target")
        ax.set_xlabel(label)
        ax.set_ylabel("episodes")
        ax.grid(alpha=0.3)
    fig.suptitle("Lead times of detected deterioration episodes")
    fig.savefig(path, format="png", dpi=100)
    return path


def _plot_burden(result: Mapping[str, Any], path: Path) -> Path:
    fig = _figure(8.0, 4.0)
    ax = fig.subplots()
    names = [s for s, _ in _SYSTEMS]
    keys = (("false_alerts_per_patient_day", "false alerts"), ("all_alerts_per_patient_day", "all alerts"))
    width = 0.38
    for k, (key, label) in enumerate(keys):
        vals = [result[s][key] or 0.0 for s in names]
        bars = ax.bar([i + (k - 0.5) * width for i in range(len(names))], vals, width, label=label,
                      color=("tab:red", "tab:gray")[k])
        ax.bar_label(bars, labels=[f"{v:.2f}" for v in vals], fontsize=8)
    ax.axhline(TARGETS["false_per_patient_day_max"], color="green", linestyle="--", linewidth=0.8,
               label="false-alert target")
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("per patient-day")
    if max((result[s][k] or 0.0) for s in names for k, _ in keys) > 20 * TARGETS["false_per_patient_day_max"]:
        ax.set_yscale("symlog", linthresh=0.1)
    ax.legend(fontsize=8)
    ax.set_title("Alert burden")
    fig.savefig(path, format="png", dpi=100)
    return path


_LEVEL_COLOURS = {"low": "gold", "medium": "darkorange", "high": "red"}


def _plot_timelines(result: Mapping[str, Any], path: Path) -> Path:
    tls = result["timelines"]
    fig = _figure(13.0, 2.8 * len(tls) + 0.6)
    axes = fig.subplots(len(tls), 1, squeeze=False)[:, 0]
    for ax, tl in zip(axes, tls, strict=True):
        raw = tl["raw_news2"]
        if raw:
            ax.step([p[0] for p in raw], [p[1] for p in raw], where="post", color="silver", linewidth=0.8,
                    label="raw NEWS2 (max per minute)")
        twin = tl["twin"]
        ax.plot([p[0] for p in twin], [p[1] for p in twin], color="tab:blue", linewidth=1.2, label="twin NEWS2 now")
        ax.axhline(RAW_THRESHOLD, color="black", linestyle=":", linewidth=0.8)
        for t in tl["baseline_alerts"]:
            ax.axvline(t, ymin=0.0, ymax=0.06, color="tab:red", linewidth=0.8)
        if tl["onset_min"] is not None:
            ax.axvline(tl["onset_min"], color="purple", linestyle="--", label="true onset")
        for t, kind, condition, level in tl["alerts"]:
            if condition != "clinical" or kind == "resolved":
                continue
            ax.scatter([t], [12.5], marker="v" if kind == "raised" else "^", s=40,
                       color=_LEVEL_COLOURS.get(level, "grey"), zorder=4)
        ax.set_ylim(-0.5, 13.5)
        if tl["onset_min"] is not None and twin:  # around the onset: three hours before, five after
            ax.set_xlim(max(tl["onset_min"] - 180.0, 0.0), min(tl["onset_min"] + 300.0, twin[-1][0]))
        ax.set_ylabel("NEWS2")
        p_ax = ax.twinx()
        p_ax.plot([p[0] for p in twin], [p[2] for p in twin], color="tab:green", linewidth=0.9, alpha=0.8,
                  label="p(NEWS2 >= 5 within horizon)")
        p_ax.set_ylim(-0.03, 1.03)
        p_ax.set_ylabel("probability")
        ax.set_title(f"{tl['patient_id']}: twinmon clinical alerts at the top (v raised, ^ worsened; colour = level), "
                     "naive baseline alerts as red ticks at the bottom", fontsize=9)
        handles = ax.get_legend_handles_labels()
        p_handles = p_ax.get_legend_handles_labels()
        ax.legend(handles[0] + p_handles[0], handles[1] + p_handles[1], loc="upper left", fontsize=7)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("minutes since the start")
    fig.savefig(path, format="png", dpi=100)
    return path


def _plot_compare(cmp: Mapping[str, Any], path: Path) -> Path:
    fig = _figure(12.0, 4.2)
    axes = fig.subplots(1, 2)
    na, nb = cmp["a"]["name"], cmp["b"]["name"]
    leads = [(na, _lead_lists(cmp["a"]["result"], "twinmon", "raw"), "tab:blue"),
             (nb, _lead_lists(cmp["b"]["result"], "twinmon", "raw"), "tab:orange")]
    values = [x for _, xs, _ in leads for x in xs]
    if values:
        lo, hi = min(values), max(values)
        bins = [lo + (hi - lo + 1e-9) * i / 24 for i in range(25)]
        for name, xs, colour in leads:
            if xs:
                axes[0].hist(xs, bins=bins, alpha=0.5, color=colour, label=f"{name} (n={len(xs)})")
        axes[0].legend(fontsize=8)
    axes[0].set_xlabel("lead time vs raw NEWS2 reaching 5, min")
    axes[0].set_ylabel("episodes")
    keys = (("false_alerts_per_patient_day", "false"), ("clinical_alerts_per_patient_day", "clinical"),
            ("all_alerts_per_patient_day", "all"))
    width = 0.38
    for k, (side, name, colour) in enumerate((("a", na, "tab:blue"), ("b", nb, "tab:orange"))):
        vals = [cmp[side]["result"]["twinmon"][key] or 0.0 for key, _ in keys]
        bars = axes[1].bar([i + (k - 0.5) * width for i in range(len(keys))], vals, width, label=name, color=colour)
        axes[1].bar_label(bars, labels=[f"{v:.2f}" for v in vals], fontsize=8)
    axes[1].set_xticks(range(len(keys)), [label for _, label in keys])
    axes[1].set_ylabel("alerts per patient-day")
    axes[1].legend(fontsize=8)
    fig.suptitle("Virtual trial")
    fig.savefig(path, format="png", dpi=100)
    return path
