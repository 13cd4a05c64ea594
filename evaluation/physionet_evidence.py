"""Real data, issue 16 part 4: the alert policy's burden on PhysioNet 2012 stays, and the mortality model's
calibration and subgroups, with and without arterial SaO2.

``twinmon evaluate physionet2012-evidence --stays ... --outcomes ... --out DIR`` (definitions here; the replay and
the model are ``evaluation.physionet`` and ``evaluation.physionet_model``):

* **Alert burden** (``alert_replay``): each stay's readings stepped through the twin (as ``replay_stay``), and at
  each charted minute the clinical level (``alerts.policy.clinical_level``: NEWS2 now, the predicted risk and the
  drift rule) fed to the policy's state machine (``decide``; the default policy settings, risk with
  ``ICU_CHARTED_SETTINGS``); when a level is pending, again ``persist_ms`` later, so that a level that holds is
  raised at once rather than at the next chart entry. Clinical alerts only: the technical conditions
  (``no_data`` after 15 min) are meant for streamed wearables and would fire between every two hourly chart
  entries. Alerts are counted as ``evaluation.cohort.clinical_alert_times`` counts them (raised at MEDIUM or
  above, or escalated to a higher level), and HIGH ones apart; per patient-day of record (48 h = 2 days); for
  survivors and for those who died; the share of deaths (and of survivors) with a HIGH alert; the time from the
  first HIGH alert to the end of the record (48 h after admission: the set does not give the time of death).
* **Mortality model**: calibration (intercept and slope of the logistic recalibration, Brier score against the
  base rate, expected calibration error, reliability in ten equal-width bins) of the shipped model's
  probabilities (or ``--model FILE``'s) and, on the set it was fitted on, of the 10-fold out-of-fold
  probabilities (the honest ones there); AUROC and event 1 with 95 % bootstrap intervals over stays, overall and
  in subgroups (age bands; ventilated at any time or not). The set's files carry no ICUType descriptor
  (unlike the challenge's description), so there is no ICU-type subgroup.
* **Without SaO2**: arterial SaO2 is a blood-gas value, not a wearable vital. The same replay with every SaO2
  reading removed; the model refitted without it inside each fold (10-fold cross-validated AUROC, event 1).
* **Record ids**: the shipped model was fitted on set A; ``evaluation.physionet.training_ids`` lists its record
  ids. Stays whose ids
  are among them are counted and warned about: the shipped model's figures on them are in-sample.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

from alerts.policy import AlertEvent, Condition, Level, PatientAlerts, PolicySettings, clinical_level, decide
from evaluation import physionet as pn
from evaluation import physionet_model as model
from evaluation.cohort import _figure, clinical_alert_times
from evaluation.datasets import DEFAULT_START_MS
from evaluation.evidence import bootstrap, calibration_slope, ece, exact_interval, reliability
from twin_state.catalogue import Metric
from twin_state.risk import RiskSettings, risk
from twin_state.twin import Position, Reading, new_twin, step

MS_PER_HOUR = 3_600_000
RECORD_DAYS = pn.HOURS / 24
AGE_BANDS = ((0, 50, "<50"), (50, 65, "50-64"), (65, 80, "65-79"), (80, 200, ">=80"))
BOOTSTRAP_STAYS = 1000


@dataclass(frozen=True, slots=True)
class StayEvidence:
    record_id: str
    age: float | None
    icu_type: int | None
    ventilated: bool
    features: tuple[float, ...]
    features_without_sao2: tuple[float, ...]
    alerts: tuple[int, ...]
    """Clinical alert times at MEDIUM or above (ms since admission)."""
    high_alerts: tuple[int, ...]


def _static(text: str) -> tuple[float | None, int | None, bool]:
    age: float | None = None
    icu: int | None = None
    ventilated = False
    for line in io.StringIO(text):
        parts = line.strip().split(",")
        if len(parts) != 3:
            continue
        _, parameter, value = parts
        try:
            v = float(value)
        except ValueError:
            continue
        if parameter == "Age" and v >= 0:
            age = v
        elif parameter == "ICUType" and v > 0:
            icu = int(v)
        elif parameter == "MechVent" and v == 1:
            ventilated = True
    return age, icu, ventilated


DEFAULT_POLICY = PolicySettings()


def alert_replay(readings: Sequence[Reading], settings: RiskSettings = pn.ICU_CHARTED_SETTINGS,
                 policy: PolicySettings = DEFAULT_POLICY, start_ms: int = DEFAULT_START_MS) -> list[AlertEvent]:
    """The policy's clinical alert events over one stay (see the module docstring)."""
    twin = new_twin(readings[0].patient_id if readings else "unknown")
    state = PatientAlerts(twin.patient_id)
    events: list[AlertEvent] = []
    end = start_ms + pn.HOURS * MS_PER_HOUR
    i = 0
    while i < len(readings) and readings[i].measured_at <= end:
        now = readings[i].measured_at
        while i < len(readings) and readings[i].measured_at == now:
            twin, _ = step(twin, readings[i], Position(0, i))
            i += 1
        times = [now]
        while times:
            t = times.pop()
            level = clinical_level(risk(twin, None, t, settings), policy)
            state, out = decide(state, {Condition.CLINICAL: level}, t, policy)
            events += out
            if Condition.CLINICAL in state.pending and t == now:
                due = state.pending[Condition.CLINICAL].since + policy.persist_ms
                if due <= end and (i >= len(readings) or due < readings[i].measured_at):
                    times.append(due)
    return events


def _stay(item: tuple[str, str]) -> StayEvidence:
    stem, text = item
    record_id, readings = pn.parse_stay(io.StringIO(text, newline=""), DEFAULT_START_MS)
    age, icu, ventilated = _static(text)
    _t, hours, _c = pn.replay_stay(readings, DEFAULT_START_MS)
    without = [r for r in readings if r.metric is not Metric.SPO2]
    _t2, hours2, _c2 = pn.replay_stay(without, DEFAULT_START_MS)
    events = alert_replay(readings)
    return StayEvidence(
        record_id or stem, age, icu, ventilated,
        tuple(float(x) for x in model.stay_features([h.row for h in hours])),
        tuple(float(x) for x in model.stay_features([h.row for h in hours2])),
        tuple(t - DEFAULT_START_MS for t in clinical_alert_times(events)),
        tuple(t - DEFAULT_START_MS for t in clinical_alert_times(events, Level.HIGH)))


def replay_all(texts: list[tuple[str, str]], workers: int) -> list[StayEvidence]:
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            return list(pool.map(_stay, texts, chunksize=25))
    return [_stay(t) for t in texts]


# --- statistics over stays --------------------------------------------------------------------------------------


def auroc_np(scores: NDArray[np.float64], labels: NDArray[np.int64]) -> float | None:
    """Mann-Whitney AUROC with midranks (as ``evaluation.physionet.auroc``), vectorised for the bootstrap."""
    pos = int(labels.sum())
    neg = len(labels) - pos
    if pos == 0 or neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    ranks = np.empty(len(s))
    starts = np.flatnonzero(np.concatenate([[True], s[1:] != s[:-1]]))
    ends = np.concatenate([starts[1:], [len(s)]])
    for a, b in zip(starts, ends, strict=True):
        ranks[a:b] = (a + b - 1) / 2 + 1
    r = np.empty(len(s))
    r[order] = ranks
    return float((r[labels == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _event1(p: NDArray[np.float64], y: NDArray[np.int64], threshold: float) -> float | None:
    flagged = p >= threshold
    pos = y.sum()
    if pos == 0:
        return None
    tp = float((flagged & (y == 1)).sum())
    se = tp / pos
    ppv = tp / flagged.sum() if flagged.sum() else 0.0
    return float(min(se, ppv))


def discrimination(p: NDArray[np.float64], y: NDArray[np.int64], threshold: float,
                   reps: int = BOOTSTRAP_STAYS) -> dict[str, Any]:
    a = auroc_np(p, y)
    e = _event1(p, y, threshold)
    return {"n": len(y), "deaths": int(y.sum()), "auroc": None if a is None else round(a, 4),
            "auroc_95ci": bootstrap(len(y), lambda i: auroc_np(p[i], y[i]), reps),
            "event1": None if e is None else round(e, 4),
            "event1_95ci": bootstrap(len(y), lambda i: _event1(p[i], y[i], threshold), reps)}


def calibration(p: NDArray[np.float64], y: NDArray[np.int64], reps: int = BOOTSTRAP_STAYS) -> dict[str, Any]:
    yf = y.astype(float)
    fit = calibration_slope(p, yf)
    base = float(yf.mean())

    def slope_of(i: NDArray[np.int64]) -> float | None:
        r = calibration_slope(p[i], yf[i])
        return None if r is None else r[1]

    return {
        "intercept": None if fit is None else round(fit[0], 3), "slope": None if fit is None else round(fit[1], 3),
        "slope_95ci": bootstrap(len(y), slope_of, reps),
        "brier": round(float(np.mean((p - yf) ** 2)), 4), "brier_base_rate": round(base * (1 - base), 4),
        "ece": round(ece(p, yf), 4), "mean_predicted": round(float(p.mean()), 4), "observed": round(base, 4),
        "reliability": reliability(p, yf),
    }


def _groups(stays: Sequence[StayEvidence]) -> dict[str, NDArray[np.bool_]]:
    out: dict[str, NDArray[np.bool_]] = {}
    ages = np.array([math.nan if s.age is None else s.age for s in stays])
    for lo, hi, name in AGE_BANDS:
        out[f"age {name}"] = (ages >= lo) & (ages < hi)
    vent = np.array([s.ventilated for s in stays])
    out["ventilated"], out["not ventilated"] = vent, ~vent
    return out


def _rate(counts: NDArray[np.float64], reps: int) -> tuple[float | None, list[float] | None]:
    if not len(counts):
        return None, None
    return (round(float(counts.mean() / RECORD_DAYS), 3),
            bootstrap(len(counts), lambda i: float(counts[i].mean() / RECORD_DAYS), reps))


def burden(stays: Sequence[StayEvidence], y: NDArray[np.int64], reps: int = BOOTSTRAP_STAYS) -> dict[str, Any]:
    """Alerts per patient-day, share with a HIGH alert, hours from the first HIGH alert to the end of the record."""
    out: dict[str, Any] = {}
    for label, died in (("survivors", 0), ("died", 1)):
        group = [s for s, d in zip(stays, y.tolist(), strict=True) if d == died]
        alerts, alerts_ci = _rate(np.array([len(s.alerts) for s in group], dtype=np.float64), reps)
        high, high_ci = _rate(np.array([len(s.high_alerts) for s in group], dtype=np.float64), reps)
        firsts = [s.high_alerts[0] for s in group if s.high_alerts]
        to_end = np.array([(pn.HOURS * MS_PER_HOUR - t) / MS_PER_HOUR for t in firsts], dtype=np.float64)
        quartiles = np.percentile(to_end, [25, 50, 75]) if len(to_end) else None
        out[label] = {
            "stays": len(group), "alerts_per_patient_day": alerts, "alerts_per_patient_day_95ci": alerts_ci,
            "high_alerts_per_patient_day": high, "high_alerts_per_patient_day_95ci": high_ci,
            "with_a_high_alert": len(firsts),
            "share_with_a_high_alert": round(len(firsts) / len(group), 3) if group else None,
            "share_with_a_high_alert_95ci_exact": exact_interval(len(firsts), len(group)),
            "hours_first_high_to_end_median": None if quartiles is None else round(float(quartiles[1]), 1),
            "hours_first_high_to_end_quartiles": None if quartiles is None else [round(float(quartiles[0]), 1),
                                                                                  round(float(quartiles[2]), 1)],
            "hours_first_high_to_end_median_95ci": bootstrap(
                len(to_end), lambda i, x=to_end: float(np.median(x[i])), reps),
        }
    return out


def evaluate_physionet_evidence(stays: Path | str, outcomes_file: Path | str, *, model_file: Path | None = None,
                                limit: int | None = None, workers: int | None = None,
                                reps: int = BOOTSTRAP_STAYS) -> dict[str, Any]:
    texts = pn._stay_texts(Path(stays))
    if limit is not None:
        texts = texts[:limit]
    deaths = pn.outcomes(outcomes_file)
    n_workers = min(workers or os.cpu_count() or 1, 2)
    results = [r for r in replay_all(texts, n_workers if len(texts) > 50 else 1) if r.record_id in deaths]
    y = np.array([deaths[r.record_id] for r in results], dtype=np.int64)
    features = np.array([r.features for r in results]).reshape(len(results), len(model.FEATURES))
    features_no = np.array([r.features_without_sao2 for r in results]).reshape(len(results), len(model.FEATURES))
    used = model.LogisticModel.from_json(model_file.read_text()) if model_file else model.shipped()
    p = used.predict(features)
    overlap = sorted({r.record_id for r in results} & pn.training_ids())
    warnings = []
    if overlap:
        warnings.append(f"{len(overlap)} of {len(results)} stays are among the {len(pn.training_ids())} the shipped "
                        "model "
                        "was fitted on (set A): its figures on them are in-sample")
    out: dict[str, Any] = {
        "stays": str(stays), "n": len(results), "deaths": int(y.sum()),
        "model": {"file": str(model_file) if model_file else "shipped", "trained_on": used.trained_on,
                  "threshold": used.threshold},
        "stays_in_training_set": len(overlap), "warnings": warnings,
        "headline": {"note": "the model as given (shipped: fitted on set A) scored on these stays",
                     **discrimination(p, y, used.threshold, reps), "calibration": calibration(p, y, reps)},
        "subgroups": {name: discrimination(p[m], y[m], used.threshold, reps) for name, m in _groups(results).items()},
        "alert_burden": burden(results, y, reps),
    }
    if len(results) >= pn.CV_MIN_STAYS and y.sum() >= pn.CV_MIN_DEATHS:
        oof = model.cross_validated(features, y)
        oof_no = model.cross_validated(features_no, y)
        out["cross_validated"] = {
            "note": "a model of the same form refitted inside each of 10 folds on THESE stays and scored on the fold "
                    "left out: how well the method does when fitted on this set, not the shipped model",
            **discrimination(oof, y, used.threshold, reps), "calibration": calibration(oof, y, reps)}
        out["subgroups_cross_validated"] = {name: discrimination(oof[m], y[m], used.threshold, reps)
                                            for name, m in _groups(results).items()}
        out["without_sao2_cross_validated"] = {
            "note": "every SaO2 (arterial blood gas) reading removed before the replay; refitted inside each fold",
            **discrimination(oof_no, y, used.threshold, reps), "calibration": calibration(oof_no, y, reps)}
    return out


def _fmt(x: Any) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, list):
        return "[" + ", ".join(_fmt(v) for v in x) + "]"
    return f"{x:g}" if isinstance(x, float) else str(x)


def write_physionet_report(result: dict[str, Any], out_dir: Path | str, command: str) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "physionet.md", out / "physionet.json", out / "physionet_calibration.png"]
    paths[1].write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    _plot(result, paths[2])
    h = result["headline"]
    md = ["# twinmon on PhysioNet 2012: alert burden and the mortality model (issue 16, part 4)", "",
          f"`{command}`", "",
          f"{result['n']} stays with outcomes, {result['deaths']} deaths. Model: {result['model']['file']} "
          f"({result['model']['trained_on']}); threshold {result['model']['threshold']}. Stays among the shipped "
          f"model's training set: {result['stays_in_training_set']}.", ""]
    md += [f"**Warning:** {w}" for w in result["warnings"]]
    md += ["", "## Alert burden (clinical alerts, default policy; definitions: evaluation/physionet_evidence.py)", "",
           "| | stays | alerts (>= medium) per patient-day | HIGH per patient-day | with a HIGH alert | "
           "hours from first "
           "HIGH to end of record, median [IQR] (95% CI) |", "|---|---:|---|---|---|---|"]
    for label, b in result["alert_burden"].items():
        md.append(" | ".join([
            f"| {label}", str(b["stays"]),
            f"{_fmt(b['alerts_per_patient_day'])} {_fmt(b['alerts_per_patient_day_95ci'])}",
            f"{_fmt(b['high_alerts_per_patient_day'])} {_fmt(b['high_alerts_per_patient_day_95ci'])}",
            f"{b['with_a_high_alert']} = {_fmt(b['share_with_a_high_alert'])} "
            f"{_fmt(b['share_with_a_high_alert_95ci_exact'])}",
            f"{_fmt(b['hours_first_high_to_end_median'])} {_fmt(b['hours_first_high_to_end_quartiles'])} "
            f"({_fmt(b['hours_first_high_to_end_median_95ci'])}) |"]))
    md += ["", "## Mortality model", "", "| | AUROC (95% CI) | event 1 (95% CI) | intercept | slope (95% CI) | Brier "
           "(base rate) | ECE |", "|---|---|---|---|---|---|---|"]
    for label, d in (("headline: " + h["note"], h), *((k, result[k]) for k in ("cross_validated",
                                                                                 "without_sao2_cross_validated")
                                                       if k in result)):
        c = d["calibration"]
        md.append(f"| {label} | {_fmt(d['auroc'])} {_fmt(d['auroc_95ci'])} | {_fmt(d['event1'])} "
                  f"{_fmt(d['event1_95ci'])} | {_fmt(c['intercept'])} | {_fmt(c['slope'])} {_fmt(c['slope_95ci'])} | "
                  f"{_fmt(c['brier'])} ({_fmt(c['brier_base_rate'])}) | {_fmt(c['ece'])} |")
    for k in ("cross_validated", "without_sao2_cross_validated"):
        if k in result:
            md.append(f"\n{k}: {result[k]['note']}.")
    md += ["", "## Subgroups (the model as given)", "",
           "| subgroup | stays | deaths | AUROC (95% CI) | event 1 (95% CI) |",
           "|---|---:|---:|---|---|"]
    md += [f"| {k} | {d['n']} | {d['deaths']} | {_fmt(d['auroc'])} {_fmt(d['auroc_95ci'])} | {_fmt(d['event1'])} "
           f"{_fmt(d['event1_95ci'])} |" for k, d in result["subgroups"].items()]
    if "subgroups_cross_validated" in result:
        md += ["", "## Subgroups, out-of-fold (10-fold refits on these stays)", "",
               "| subgroup | stays | deaths | AUROC (95% CI) | event 1 (95% CI) |", "|---|---:|---:|---|---|"]
        md += [f"| {k} | {d['n']} | {d['deaths']} | {_fmt(d['auroc'])} {_fmt(d['auroc_95ci'])} | "
               f"{_fmt(d['event1'])} {_fmt(d['event1_95ci'])} |"
               for k, d in result["subgroups_cross_validated"].items()]
    md += ["", "![calibration](physionet_calibration.png)", ""]
    paths[0].write_text("\n".join(md), encoding="utf-8")
    return paths


def _plot(result: dict[str, Any], path: Path) -> Path:
    fig = _figure(6.0, 5.0)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="black", linestyle=":", linewidth=0.8)
    for key, label in (("headline", "model as given"), ("cross_validated", "10-fold out-of-fold"),
                       ("without_sao2_cross_validated", "without SaO2, out-of-fold")):
        if key in result:
            rel = result[key]["calibration"]["reliability"]
            ax.plot([r[2] for r in rel], [r[3] for r in rel], marker="o", label=label)
    ax.set_xlabel("predicted probability of in-hospital death")
    ax.set_ylabel("observed frequency")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Mortality model reliability (10 bins)")
    fig.savefig(path, format="png", dpi=100)
    return path

