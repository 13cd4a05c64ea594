"""PhysioNet/CinC Challenge 2012 ICU stays replayed through the twin, scored against in-hospital death.

The data (``../shared/data/physionet2012-set-a.tar.gz``; see that folder's README for source, licence and
citation) are 4,000 ICU stays of MIMIC-II, one CSV per stay with rows ``Time,Parameter,Value``, ``Time`` being
``HH:MM`` since ICU admission, over the first 48 hours. Values are charted (roughly hourly), not streamed.

Mapping of the set's parameters to twin vitals (``PARAMETERS``):

========================  ===============  ===============  ================================================
set parameter             twin metric      device id        note
========================  ===============  ===============  ================================================
HR                        heart_rate       icu-monitor
RespRate                  resp_rate        icu-monitor      charted in only 27 % of stays, none of them
                                                            ventilated (MechVent): NEWS2 is often partial
SysABP / DiasABP          bp_systolic /    icu-monitor      invasive arterial line
                          bp_diastolic
NISysABP / NIDiasABP      bp_systolic /    icu-cuff         non-invasive cuff; both devices feed one filter
                          bp_diastolic                      per vital and the twin fuses them
Temp                      temperature      icu-nurse
SaO2                      spo2             icu-lab          ARTERIAL saturation from blood gases, not pulse
                                                            oximetry (the set has no SpO2): it is sparse
                                                            (45 % of stays, every few hours), and the two
                                                            can differ by a few percent
FiO2                      o2_flow          icu-nurse        FiO2 > 0.21 is "on oxygen", FiO2 <= 0.21 is air
MechVent (= 1)            o2_flow          icu-nurse        ventilated counts as on oxygen
GCS                       consciousness    icu-nurse        ACVPU index, see ``gcs_to_acvpu``
========================  ===============  ===============  ================================================

* The set records no oxygen flow. NEWS2 only asks "air or oxygen", so a stay on oxygen or a ventilator gets
  a nominal ``ON_OXYGEN_L_MIN`` and air gets 0; the flow value itself means nothing.
* GCS to ACVPU (``gcs_to_acvpu``) is an approximation, as any is: 15 A, 13-14 C (NEWS2's "new confusion"),
  9-12 V, 6-8 P, 3-5 U. NEWS2 scores every level but A as 3, so only "15 or not" matters for the score.
  Ventilated stays are mostly charted below 15 (median of the stays' median GCS: 10, against 15 in the
  others; sedation), so they score 3 here as well as 2 for oxygen.
* Not mapped: MAP and NIMAP (the catalogue has no mean pressure), Urine, Weight and every laboratory value;
  the static descriptors at 00:00 (RecordID, Age, Gender, Height, ICUType, Weight) are not readings.
* ``-1`` (the set's "missing") and unparseable values are skipped; values outside the catalogue's
  ``possible`` range (a temperature of -17.8) are dropped and counted, as the edge would dead-letter them.
  Zeros and other implausible-but-possible values (HR 0, SysABP 0) are kept: the twin rejects them itself.

Evaluation (``evaluate_stays``): every stay is replayed in time order through ``step`` (the same pure twin
code as the worker, positions = index in the stay) and, once per hour of event time (hours 1-48, after the
readings measured up to that hour), ``risk`` is evaluated with ``ICU_CHARTED_SETTINGS``: the worker's
staleness limits (minutes, for streamed monitor data) would call every hourly chart entry stale, so charted
data get limits of a few hours. Each stay's score is a function of those hourly outputs and is compared with
in-hospital death: AUROC (exact Mann-Whitney, ties as half) and the challenge's event-1 score, min(sensitivity,
positive predictivity), at a fixed decision threshold (``default_threshold``). The default score
(``DEFAULT_SCORE``) is the shipped mortality model (``evaluation.physionet_model``: a logistic regression over
per-stay summaries of the hourly twin outputs, vital signs only); the single summaries (``SCORES``: mean NEWS2
and the like) are reported beside it. The model and its threshold were fitted and chosen on set A, so on set A
they are in-sample; ``cross_validated`` (10 folds, refitted without each) is the honest figure there.
"""

from __future__ import annotations

import csv
import io
import math
import os
import tarfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from functools import lru_cache, partial
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np

from evaluation import physionet_model as model
from evaluation.datasets import DEFAULT_START_MS
from twin_state.catalogue import CATALOGUE, OBSERVATIONS, Metric
from twin_state.risk import RiskSettings, risk
from twin_state.twin import Outcome, Position, Reading, Twin, new_twin, step

MS_PER_MINUTE = 60_000
MS_PER_HOUR = 3_600_000
HOURS = 48
"""The set's window: the first 48 hours of the ICU stay, in event time."""

MONITOR, CUFF, LAB, NURSE = "icu-monitor", "icu-cuff", "icu-lab", "icu-nurse"

PARAMETERS: dict[str, tuple[Metric, str]] = {
    "HR": (Metric.HEART_RATE, MONITOR),
    "RespRate": (Metric.RESP_RATE, MONITOR),
    "SysABP": (Metric.BP_SYSTOLIC, MONITOR),
    "DiasABP": (Metric.BP_DIASTOLIC, MONITOR),
    "NISysABP": (Metric.BP_SYSTOLIC, CUFF),
    "NIDiasABP": (Metric.BP_DIASTOLIC, CUFF),
    "Temp": (Metric.TEMPERATURE, NURSE),
    "SaO2": (Metric.SPO2, LAB),
    "FiO2": (Metric.O2_FLOW, NURSE),
    "MechVent": (Metric.O2_FLOW, NURSE),
    "GCS": (Metric.CONSCIOUSNESS, NURSE),
}
"""Set parameter -> (twin metric, device id). See the module docstring for what each mapping means."""

MISSING = -1.0
ROOM_AIR_FIO2 = 0.21
ON_OXYGEN_L_MIN = 2.0
"""Nominal oxygen flow for "on oxygen or ventilated": the set has FiO2, not flows, and NEWS2 needs on/off only."""


def gcs_to_acvpu(gcs: float) -> int:
    """Glasgow Coma Scale (3-15) to an index into ``ACVPU``: 15 A, 13-14 C, 9-12 V, 6-8 P, 3-5 U."""
    if gcs >= 15:
        return 0
    if gcs >= 13:
        return 1
    if gcs >= 9:
        return 2
    if gcs >= 6:
        return 3
    return 4


def _value(parameter: str, raw: float) -> float:
    """The set's value in the twin metric's unit."""
    if parameter == "FiO2":
        return ON_OXYGEN_L_MIN if raw > ROOM_AIR_FIO2 else 0.0
    if parameter == "MechVent":
        return ON_OXYGEN_L_MIN if raw >= 1 else 0.0
    if parameter == "GCS":
        return float(gcs_to_acvpu(raw))
    return raw


def _possible(metric: Metric) -> tuple[float, float]:
    spec = CATALOGUE.get(metric)
    return spec.possible if spec is not None else OBSERVATIONS[metric].possible


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def parse_stay(
    lines: Iterable[str], start_ms: int = DEFAULT_START_MS, dropped: Counter[str] | None = None
) -> tuple[str, list[Reading]]:
    """One stay's CSV lines (header included) as ``(record_id, readings)``; see ``stay_readings``."""
    record_id = ""
    rows: list[tuple[int, int, str, float]] = []
    rows_in: Iterator[list[str]] = csv.reader(lines)
    next(rows_in, None)
    for row in rows_in:
        if len(row) != 3:
            continue
        hhmm, parameter, text = row
        if parameter == "RecordID":
            record_id = text.strip().removesuffix(".0")
            continue
        if parameter not in PARAMETERS:
            continue  # static descriptors and unmapped parameters (labs, MAP, urine)
        try:
            raw = float(text)
            minute = _minutes(hhmm)
        except ValueError:
            continue
        if raw == MISSING or not math.isfinite(raw):
            continue
        metric = PARAMETERS[parameter][0]
        value = _value(parameter, raw)
        lo, hi = _possible(metric)
        if not lo <= value <= hi:
            if dropped is not None:
                dropped[parameter] += 1
            continue
        # MechVent after FiO2 at the same minute: a ventilated patient is "on oxygen" even if charted at 0.21.
        rows.append((minute, 1 if parameter == "MechVent" else 0, parameter, value))
    rows.sort(key=lambda r: (r[0], r[1]))  # stable: file order within a minute
    patient = record_id or "unknown"
    seqs: dict[str, int] = {}
    readings: list[Reading] = []
    for minute, _order, parameter, value in rows:
        metric, device = PARAMETERS[parameter]
        seq = seqs.get(device, 0)
        seqs[device] = seq + 1
        readings.append(Reading(patient, device, metric, value, start_ms + minute * MS_PER_MINUTE, seq))
    return record_id, readings


def stay_readings(
    path: Path | str, start_ms: int = DEFAULT_START_MS, dropped: Counter[str] | None = None
) -> tuple[str, list[Reading]]:
    """A stay file's record id and its time series as readings, sorted by measured-at.

    ``measured_at`` is ``start_ms`` plus the row's time since admission; ``patient_id`` is the record id;
    each device's ``seq`` counts its readings from 0 in time order. Values outside the catalogue's possible
    range are counted in ``dropped`` (by set parameter) when it is given.
    """
    with Path(path).open(newline="") as fh:
        return parse_stay(fh, start_ms, dropped)


def _read_outcomes(lines: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in csv.DictReader(lines):
        out[row["RecordID"].strip()] = int(row["In-hospital_death"])
    return out


def outcomes(path: Path | str) -> dict[str, int]:
    """Record id -> in-hospital death (0 or 1), from ``Outcomes-a.txt`` (or from the set's ``.tar.gz``)."""
    p = Path(path)
    if _is_tar(p):
        with tarfile.open(p) as tar:
            for member in tar:
                if member.isfile() and Path(member.name).name.startswith("Outcomes"):
                    data = tar.extractfile(member)
                    if data is not None:
                        return _read_outcomes(io.TextIOWrapper(data, encoding="utf-8", newline=""))
        raise FileNotFoundError(f"no Outcomes file in {p}")
    with p.open(newline="") as fh:
        return _read_outcomes(fh)


def _is_tar(p: Path) -> bool:
    return p.is_file() and p.name.endswith((".tar.gz", ".tgz", ".tar"))


def _stay_texts(stays: Path) -> list[tuple[str, str]]:
    """(file stem, text) of every stay file, from a directory or a tarball, sorted by stem."""
    texts: list[tuple[str, str]] = []
    if _is_tar(stays):
        with tarfile.open(stays) as tar:
            for member in tar:
                name = Path(member.name)
                if member.isfile() and name.suffix == ".txt" and name.stem.isdigit():
                    fh = tar.extractfile(member)
                    if fh is not None:
                        texts.append((name.stem, fh.read().decode("utf-8")))
    else:
        for f in stays.glob("*.txt"):
            if f.stem.isdigit():
                texts.append((f.stem, f.read_text(encoding="utf-8")))
    texts.sort(key=lambda t: int(t[0]))
    return texts


# --- replay and per-stay scores ---------------------------------------------------------------------------------

ICU_CHARTED_SETTINGS = RiskSettings(
    stale_after_ms={
        # Charted hourly (HR, BP, RR: median gap 60 min, 90th percentile 60 min): stale after a missed hour.
        Metric.HEART_RATE: 2 * MS_PER_HOUR,
        Metric.RESP_RATE: 2 * MS_PER_HOUR,
        Metric.BP_SYSTOLIC: 2 * MS_PER_HOUR,
        Metric.BP_DIASTOLIC: 2 * MS_PER_HOUR,
        # Temperature: median 60, 90th percentile 240 min. SaO2 is a blood gas: median 3 h, 90th pct 11 h.
        Metric.TEMPERATURE: 6 * MS_PER_HOUR,
        Metric.SPO2: 6 * MS_PER_HOUR,
        Metric.ACTIVITY: 2 * MS_PER_HOUR,
    },
    # GCS, FiO2 and MechVent are charted every 3 h (90th percentile 4.5 h).
    manual_max_age_min=6 * 60.0,
    acvpu_max_age_min=6 * 60.0,
)
"""Risk settings for charted ICU data; everything else as the worker's defaults."""


class Hour(NamedTuple):
    """The twin's risk outputs at one hour of event time."""

    hour: int
    news2: int
    """NEWS2-now total (partial when a parameter is missing or stale)."""
    scored: int
    """How many of NEWS2's seven parameters were present."""
    p5: float
    """Predicted probability of NEWS2 >= 5 within 60 minutes."""
    p7: float
    row: tuple[float, ...] = ()
    """The twin's outputs at this hour for the mortality model (``physionet_model.HOURLY``)."""


def replay_stay(
    readings: Sequence[Reading], start_ms: int = DEFAULT_START_MS, settings: RiskSettings = ICU_CHARTED_SETTINGS,
    hours: int = HOURS,
) -> tuple[Twin, list[Hour], Counter[Outcome]]:
    """Fold the stay's readings (first ``hours`` hours) into a new twin; risk at the end of each hour."""
    twin = new_twin(readings[0].patient_id if readings else "unknown")
    outcomes_: Counter[Outcome] = Counter()
    out: list[Hour] = []
    i, end = 0, start_ms + hours * MS_PER_HOUR
    for h in range(1, hours + 1):
        now = start_ms + h * MS_PER_HOUR
        while i < len(readings) and readings[i].measured_at <= now:
            if readings[i].measured_at <= end:
                twin, outcome = step(twin, readings[i], Position(0, i))
                outcomes_[outcome] += 1
            i += 1
        r = risk(twin, None, now, settings)
        out.append(Hour(h, r.now.total, len(r.now.subscores) - len(r.assumed), r.p(5, 60.0), r.p(7, 60.0),
                        model.hourly_row(twin, r, now, settings)))
    return twin, out, outcomes_


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def _scored(hours: Sequence[Hour]) -> list[Hour]:
    return [h for h in hours if h.scored > 0]


SCORES: dict[str, Callable[[Sequence[Hour]], float]] = {
    "mean_news2": lambda hs: _mean([h.news2 for h in _scored(hs)]),
    "mean_news2_last24h": lambda hs: _mean([h.news2 for h in _scored(hs) if h.hour > HOURS - 24]),
    "mean_news2_last12h": lambda hs: _mean([h.news2 for h in _scored(hs) if h.hour > HOURS - 12]),
    "max_news2": lambda hs: max((h.news2 for h in hs), default=0),
    "last_news2": lambda hs: hs[-1].news2 if hs else 0,
    "mean_p5_60": lambda hs: _mean([h.p5 for h in _scored(hs)]),
    "mean_p7_60": lambda hs: _mean([h.p7 for h in _scored(hs)]),
    "mean_p7_60_last24h": lambda hs: _mean([h.p7 for h in _scored(hs) if h.hour > HOURS - 24]),
    "hours_news2_ge5": lambda hs: sum(1 for h in hs if h.news2 >= 5),
    "hours_news2_ge7": lambda hs: sum(1 for h in hs if h.news2 >= 7),
}
"""Per-stay scores from the hourly outputs. Means are over the hours with at least one parameter present."""

MODEL_SCORE = "twin_model"
"""The shipped logistic model's probability of death (``evaluation.physionet_model``) from the stay's hourly twin
outputs. Before it, the best single summary was ``mean_news2_last24h`` (AUROC 0.7274 on set A)."""
DEFAULT_SCORE = MODEL_SCORE
CV_MIN_STAYS, CV_MIN_DEATHS = 100, 10
"""Cross-validation is reported when the evaluated set is big enough for ten folds to mean something."""


@lru_cache(maxsize=1)
def _shipped() -> model.LogisticModel:
    return model.shipped()


TRAINING_IDS_FILE = "physionet2012_set_a.record_ids.txt"


@lru_cache(maxsize=1)
def training_ids() -> frozenset[str]:
    """Record ids of the stays the shipped model was fitted on (set A: every stay of it with an outcome)."""
    text = resources.files("evaluation").joinpath(TRAINING_IDS_FILE).read_text()
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def default_threshold(score: str) -> float:
    """The decision threshold kept in the default configuration: the shipped model's, chosen on set A's
    out-of-fold predictions; for the single summaries, the value that maximised event 1 on set A."""
    return _shipped().threshold if score == MODEL_SCORE else LEGACY_THRESHOLDS.get(score, math.nan)


LEGACY_THRESHOLDS = {"mean_news2_last24h": 6.85}


# --- statistics -------------------------------------------------------------------------------------------------


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Exact area under the ROC curve: the Mann-Whitney probability that a positive outscores a negative,
    ties counting one half (midranks). NaN when either class is empty."""
    if len(scores) != len(labels):
        raise ValueError("scores and labels differ in length")
    pos = sum(1 for y in labels if y)
    neg = len(labels) - pos
    if pos == 0 or neg == 0:
        return math.nan
    order = sorted(range(len(scores)), key=lambda k: scores[k])
    rank_sum = 0.0
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        midrank = (i + j) / 2.0 + 1.0
        rank_sum += midrank * sum(1 for k in order[i : j + 1] if labels[k])
        i = j + 1
    return (rank_sum - pos * (pos + 1) / 2.0) / (pos * neg)


class Event1(NamedTuple):
    threshold: float
    sensitivity: float
    positive_predictivity: float
    true_positives: int
    predicted_positive: int

    @property
    def score(self) -> float:
        """The challenge's event-1 score: min(sensitivity, positive predictivity)."""
        return min(self.sensitivity, self.positive_predictivity)


def event1(scores: Sequence[float], labels: Sequence[int], threshold: float) -> Event1:
    """Death predicted when ``score >= threshold``."""
    tp = sum(1 for s, y in zip(scores, labels, strict=True) if y and s >= threshold)
    flagged = sum(1 for s in scores if s >= threshold)
    pos = sum(1 for y in labels if y)
    return Event1(threshold, tp / pos if pos else 0.0, tp / flagged if flagged else 0.0, tp, flagged)


def best_threshold(scores: Sequence[float], labels: Sequence[int]) -> Event1:
    """The threshold (one of the scores) that maximises event 1 on these data: for choosing, not reporting."""
    best: Event1 | None = None
    for t in sorted(set(scores)):
        e = event1(scores, labels, t)
        if best is None or e.score > best.score:
            best = e
    return best if best is not None else Event1(math.nan, 0.0, 0.0, 0, 0)


# --- the evaluation ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StayResult:
    record_id: str
    readings: int
    scores: dict[str, float]
    outcomes: dict[str, int]
    dropped: dict[str, int]
    features: tuple[float, ...] = ()


@lru_cache(maxsize=4)
def _model(model_json: str | None) -> model.LogisticModel:
    return _shipped() if model_json is None else model.LogisticModel.from_json(model_json)


def _evaluate_text(item: tuple[str, str], settings: RiskSettings = ICU_CHARTED_SETTINGS,
                   model_json: str | None = None) -> StayResult:
    stem, text = item
    dropped: Counter[str] = Counter()
    record_id, readings = parse_stay(io.StringIO(text, newline=""), DEFAULT_START_MS, dropped)
    _twin, hours, counts = replay_stay(readings, DEFAULT_START_MS, settings)
    features = model.stay_features([h.row for h in hours])
    scores = {name: float(f(hours)) for name, f in SCORES.items()}
    scores[MODEL_SCORE] = float(_model(model_json).predict(features)[0])
    return StayResult(record_id or stem, len(readings), scores, {o.value: n for o, n in counts.items()},
                      dict(dropped), tuple(float(x) for x in features))


def _rounded(x: float) -> float:
    return round(x, 4)


def _replay_stays(texts: list[tuple[str, str]], settings: RiskSettings, workers: int,
                  model_json: str | None = None) -> list[StayResult]:
    """Every stay replayed, in ``workers`` processes (1: in this one); the order and results do not depend on it."""
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            return list(pool.map(partial(_evaluate_text, settings=settings, model_json=model_json), texts,
                                 chunksize=25))
    return [_evaluate_text(t, settings, model_json) for t in texts]


def _cross_validated(features: np.ndarray, y: np.ndarray, labels: list[int], set_name: str,
                     fit_model: Path | str | None, threshold: float, training_set: bool) -> dict[str, object] | None:
    """The model refitted inside each fold and scored on the stays left out (None on too few stays); with
    ``fit_model``, a model fitted on all of them written there, its threshold the best out of fold."""
    if len(labels) < CV_MIN_STAYS or sum(labels) < CV_MIN_DEATHS:
        if fit_model is not None:
            raise ValueError(f"fitting needs at least {CV_MIN_STAYS} stays with outcomes and {CV_MIN_DEATHS} deaths")
        return None
    oof = [float(v) for v in model.cross_validated(features, y)]
    at = event1(oof, labels, threshold)
    best_oof = best_threshold(oof, labels)
    if fit_model is not None:
        fitted = model.fit(features, y, trained_on=f"{set_name}: {len(labels)} stays, {sum(labels)} "
                           "deaths; threshold: best event 1 on 10-fold out-of-fold predictions")
        fitted = replace(fitted, threshold=round(best_oof.threshold, 6))
        Path(fit_model).write_text(fitted.to_json() + "\n")
    return {"folds": model.FOLDS, "l2": model.DEFAULT_L2, "auroc": _rounded(auroc(oof, labels)),
            "threshold": threshold, "event1": _rounded(at.score),
            "sensitivity": _rounded(at.sensitivity), "positive_predictivity": _rounded(at.positive_predictivity),
            "best_threshold": best_oof.threshold, "best_event1": _rounded(best_oof.score),
            "note": ("a model of the same form refitted inside each of the folds of these stays and scored on the "
                     "stays left out: the honest figure on the set the shipped model was fitted on" if training_set
                     else "a model of the same form refitted inside each of the folds of THESE stays and scored on "
                     "the stays left out: what refitting on this set would give, not the shipped model (whose "
                     "figures on these stays are the headline)")}


def _alternatives(scored: list[StayResult], labels: list[int]) -> dict[str, dict[str, object]]:
    """Every score's AUROC and its best event 1 on these data."""
    out: dict[str, dict[str, object]] = {}
    for name in (MODEL_SCORE, *SCORES):
        vs = [r.scores[name] for r in scored]
        b = best_threshold(vs, labels)
        out[name] = {"auroc": _rounded(auroc(vs, labels)), "best_threshold": b.threshold,
                     "best_event1": _rounded(b.score)}
    return out


def evaluate_stays(
    stays: Path | str,
    outcomes_file: Path | str,
    *,
    score: str = DEFAULT_SCORE,
    threshold: float | None = None,
    limit: int | None = None,
    workers: int | None = None,
    settings: RiskSettings = ICU_CHARTED_SETTINGS,
    fit_model: Path | str | None = None,
    model_file: Path | str | None = None,
) -> dict[str, object]:
    """Replay every stay (a ``set-a`` directory or the set's ``.tar.gz``) and score in-hospital death.

    ``score`` names the per-stay score (``SCORES``) whose AUROC and event 1 at ``threshold`` are the headline;
    every other score's AUROC and best-on-these-data event 1 are reported alongside. ``limit`` keeps the
    first stays by record id. ``workers`` processes replay stays in parallel (default: one per CPU; 1 runs
    in this process); the result does not depend on it. ``threshold`` defaults to ``default_threshold``.
    ``fit_model`` writes a model fitted on these stays there (threshold: best event 1 out of fold). Returns a
    JSON-able dict. ``model_file``: a model (``--fit-model``'s JSON) scored instead of the shipped one. Stays whose
    record ids are among the shipped model's training set (set A) are counted in ``stays_in_training_set`` and
    named in ``warnings``: the shipped model's figures on them are in-sample.
    """
    model_json = Path(model_file).read_text() if model_file is not None else None
    used = _model(model_json)
    if score not in SCORES and score != MODEL_SCORE:
        raise ValueError(f"unknown score {score!r}; expected one of {MODEL_SCORE}, {', '.join(SCORES)}")
    if threshold is None:
        threshold = used.threshold if score == MODEL_SCORE else default_threshold(score)
    started = time.perf_counter()
    texts = _stay_texts(Path(stays))
    if limit is not None:
        texts = texts[:limit]
    deaths_by_id = outcomes(outcomes_file)
    n_workers = workers or os.cpu_count() or 1
    parallel = n_workers > 1 and len(texts) > 50
    results = _replay_stays(texts, settings, n_workers if parallel else 1, model_json)

    scored = [r for r in results if r.record_id in deaths_by_id]
    labels = [deaths_by_id[r.record_id] for r in scored]
    without_outcome = sorted(r.record_id for r in results if r.record_id not in deaths_by_id)
    seen = {r.record_id for r in results}
    outcome_without_stay = sorted(k for k in deaths_by_id if k not in seen) if limit is None else []
    twin_outcomes: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    for r in results:
        twin_outcomes.update(r.outcomes)
        dropped.update(r.dropped)

    values = [r.scores[score] for r in scored]
    fixed = event1(values, labels, threshold)
    best = best_threshold(values, labels)
    features = np.array([r.features for r in scored]).reshape(len(scored), len(model.FEATURES))
    y = np.array(labels, dtype=int)
    in_training = sorted({r.record_id for r in scored} & training_ids())
    training_set = len(in_training) == len(scored) and len(scored) > 0
    warnings = [f"{len(in_training)} of {len(scored)} stays are among the {len(training_ids())} the shipped model was "
                "fitted on (set A): its figures on them are in-sample and optimistic"] if in_training else []
    cross = _cross_validated(features, y, labels, Path(stays).name, fit_model, threshold, training_set)
    alternatives = _alternatives(scored, labels)
    return {
        "dataset": "PhysioNet/CinC Challenge 2012",
        "stays": str(stays),
        "outcomes": str(outcomes_file),
        "n": len(scored),
        "deaths": sum(labels),
        "stays_without_outcome": without_outcome,
        "outcomes_without_stay": outcome_without_stay,
        "score": score,
        "auroc": _rounded(auroc(values, labels)),
        "threshold": threshold,
        "sensitivity": _rounded(fixed.sensitivity),
        "positive_predictivity": _rounded(fixed.positive_predictivity),
        "event1": _rounded(fixed.score),
        "true_positives": fixed.true_positives,
        "predicted_positive": fixed.predicted_positive,
        "best_on_these_data": {"threshold": best.threshold, "event1": _rounded(best.score),
                               "note": "threshold chosen on the data it is reported on: optimistic"},
        "cross_validated": cross,
        "stays_in_training_set": len(in_training),
        "warnings": warnings,
        "model": {"file": str(model_file) if model_file is not None else "shipped",
                  "trained_on": used.trained_on, "features": len(model.FEATURES), "l2": used.l2,
                  "inputs": "vital signs, consciousness (GCS as ACVPU) and oxygen only: no age, no labs"},
        "alternatives": alternatives,
        "readings": sum(r.readings for r in results),
        "twin_outcomes": dict(sorted(twin_outcomes.items())),
        "dropped_impossible": dict(sorted(dropped.items())),
        "mapping": {p: {"metric": m.value, "device": d} for p, (m, d) in PARAMETERS.items()},
        "settings": {
            "stale_after_min": {m.value: ms / MS_PER_MINUTE for m, ms in settings.stale_after_ms.items()},
            "manual_max_age_min": settings.manual_max_age_min,
            "hours": HOURS,
        },
        "notes": [
            "spo2 is SaO2 from arterial blood gases (the set has no pulse oximetry)",
            "on oxygen = FiO2 > 0.21 or MechVent; consciousness = GCS mapped to ACVPU (15 A, 13-14 C, 9-12 V, "
            "6-8 P, 3-5 U)",
            "the headline is the model as given (the shipped one: fitted, and its threshold chosen, on set A) scored "
            "on these stays: on set A it is in-sample and optimistic and cross_validated is the honest figure; on "
            "other stays it is the honest figure and cross_validated is a refit on them",
        ],
        "reference_event1": {"SAPS-I": 0.3125, "best_entry_2012": 0.5353,
                             "note": "published on set C; entries used all variables, labs included"},
        "runtime_s": round(time.perf_counter() - started, 1),
        "workers": n_workers if parallel else 1,
    }
