"""``twinmon evaluate tune-policy``: choose ``[policy]`` thresholds on the tuning seeds by replaying recorded runs.

The runs ``twinmon evaluate evidence --runs FILE`` keeps hold each patient's risk at every evaluation the worker
made (``evaluation.policy_replay``); every variant here is ``alerts.policy.decide`` replayed on them, so a grid of
policies costs seconds per variant instead of a cohort run each. Only the TUNING seeds of the file are read.

A variant is a ``PolicySettings`` (every other setting, the risk and the evaluation cadence, is the runs' own).
Figures per variant (point estimates; the intervals come from ``twinmon evaluate evidence --config``): episodes
detected, median lead over charted NEWS2 5 (``evidence.charted_reach``, 4-hourly at 1-4, a single 3 hourly),
false alerts per patient-day, and their RCP-mandated / spurious split (``evidence.false_alert_causes``).

Choice (``choose``), the issue's target read literally: among the variants that detect every episode the reference
detects and keep a median lead of at least 90 min, the longest median lead of those with at most 0.2 false alerts
per patient-day (ties to the earlier first alert after the onset, median then mean, then to fewer false alerts);
if none gets there, the fewest false alerts.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import pickle
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alerts.policy import Level, PolicySettings
from evaluation.evidence import (
    FALSE_TARGET,
    LEAD_TARGET_MIN,
    MS_PER_DAY,
    MS_PER_MIN,
    PatientData,
    charted_reach,
    false_alert_causes,
    with_policy,
)


def load_tuning_runs(path: Path | str) -> list[PatientData]:
    """The tuning seeds' patients of a ``--runs`` file written by ``twinmon evaluate evidence``."""
    _key, tune, _test = pickle.loads(Path(path).read_bytes())  # noqa: S301  # this program's own cache file
    return list(tune)


def variant_figures(patients: Sequence[PatientData], settings: PolicySettings,
                    charted_at: Mapping[str, int | None]) -> dict[str, Any]:
    """Detected episodes, median lead over charted NEWS2 (censored at the end of the record), false alerts per
    patient-day (before the onset or on stable patients) and how many were RCP-mandated."""
    replayed = with_policy(patients, settings)
    detected = episodes = false = 0
    days = 0.0
    leads: list[float] = []
    after_onset: list[float] = []
    for p in replayed:
        if p.onset_ms is None:
            false += len(p.alerts)
            days += (p.end_ms - p.start_ms) / MS_PER_DAY
            continue
        episodes += 1
        false += sum(1 for t in p.alerts if t < p.onset_ms)
        days += (p.onset_ms - p.start_ms) / MS_PER_DAY
        inside = [t for t in p.alerts if p.onset_ms <= t < p.end_ms]
        if inside:
            detected += 1
            target = charted_at.get(p.key)
            leads.append(((p.end_ms if target is None else target) - min(inside)) / MS_PER_MIN)
            after_onset.append((min(inside) - p.onset_ms) / MS_PER_MIN)
    causes = false_alert_causes(patients, settings, reps=0)
    return {
        "settings": {f.name: _shown(getattr(settings, f.name)) for f in dataclasses.fields(settings)},
        "episodes": episodes, "detected": detected,
        "median_lead_min": round(float(np.median(leads)), 1) if leads else None,
        "median_alert_after_onset_min": round(float(np.median(after_onset)), 1) if after_onset else None,
        "mean_alert_after_onset_min": round(float(np.mean(after_onset)), 1) if after_onset else None,
        "false_per_patient_day": round(false / days, 3) if days else math.inf,
        "rcp_mandated_per_patient_day": causes["rcp_mandated_per_patient_day"],
        "spurious_per_patient_day": causes["spurious_per_patient_day"],
    }


def _shown(v: object) -> object:
    if isinstance(v, Mapping):
        return {getattr(k, "name", str(k)).lower(): x for k, x in v.items()}
    return v.name.lower() if isinstance(v, Level) else v


def grid(base: PolicySettings, axes: Mapping[str, Sequence[Any]]) -> Iterable[PolicySettings]:
    """Every combination of ``axes`` (field name -> values) on ``base``."""
    names = list(axes)
    for values in itertools.product(*(axes[n] for n in names)):
        yield dataclasses.replace(base, **dict(zip(names, values, strict=True)))


def evaluate_variants(patients: Sequence[PatientData], variants: Iterable[PolicySettings]) -> list[dict[str, Any]]:
    charted_at = {p.key: charted_reach(p)[0] for p in patients}
    return [variant_figures(patients, v, charted_at) for v in variants]


def choose(results: Sequence[Mapping[str, Any]], reference: Mapping[str, Any],
           lead_target: float = LEAD_TARGET_MIN, false_target: float = FALSE_TARGET) -> Mapping[str, Any] | None:
    """Among the variants that detect at least the reference's episodes and keep the median lead at or above
    ``lead_target``: if some have at most ``false_target`` false alerts per patient-day, the longest median lead of
    those (ties to fewer false alerts); else the fewest false alerts (ties to the longer lead). None if none keeps
    detection and the lead."""
    def lead(r: Mapping[str, Any]) -> float:
        return float(r["median_lead_min"]) if r["median_lead_min"] is not None else -math.inf

    ok = [r for r in results if r["detected"] >= reference["detected"] and lead(r) >= lead_target]
    if not ok:
        return None
    within = [r for r in ok if r["false_per_patient_day"] <= false_target]
    if within:
        return max(within, key=lambda r: (lead(r), -(r.get("median_alert_after_onset_min") or 0.0),
                                          -(r.get("mean_alert_after_onset_min") or 0.0), -r["false_per_patient_day"]))
    return min(ok, key=lambda r: (r["false_per_patient_day"], -lead(r)))


def parse_axis(text: str) -> tuple[str, list[float | int]]:
    """``name=v1,v2,...`` of a numeric ``PolicySettings`` field (whole numbers stay ints: milliseconds)."""
    name, sep, values = text.partition("=")
    names = {f.name for f in dataclasses.fields(PolicySettings)}
    if not sep or name not in names:
        raise ValueError(f"{text!r}: an axis is NAME=V1,V2,... with NAME one of {', '.join(sorted(names))}")
    out: list[float | int] = []
    for v in values.split(","):
        x = float(v)
        out.append(int(x) if x.is_integer() and "." not in v else x)
    return name, out


def tune_policy(patients: Sequence[PatientData], base: PolicySettings,
                axes: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    """Every variant of the grid on ``patients`` (the tuning seeds), the reference (``base``) and the choice."""
    reference = evaluate_variants(patients, [base])[0]
    results = evaluate_variants(patients, grid(base, axes))
    return {"patients": len(patients), "axes": {k: list(v) for k, v in axes.items()}, "reference": reference,
            "variants": results, "chosen": choose(results, reference)}
