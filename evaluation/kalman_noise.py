"""Kalman noise per vital estimated on real data, and the filter's NIS before and after (issue 16, part 4).

The catalogue's noise figures (``twin_state.catalogue``: ``measurement_noise`` r, ``level_noise`` q_level,
``process_noise`` q) were set by hand on the simulator. Here they are estimated, per vital, by maximum likelihood
(the prediction-error decomposition of the level-and-trend filter ``twin_state.kalman``): over a grid of
multipliers of r, q_level and q, the triple with the smallest summed Gaussian negative log-likelihood of the
innovations, ``0.5 * (log S + y^2 / S)``, over the real series:

* ``mimic``: the MIMIC-III bedside-monitor trace (72 min, one reading a minute per vital; both heart-rate
  columns feed one filter as in the twin);
* ``physionet``: charted vitals of the first ``stays`` PhysioNet 2012 set-A stays (about hourly; invasive and
  cuff pressures feed one filter as in the twin; SaO2 is a blood gas and is left out).

Readings outside the catalogue's plausible range (probe-off zeros, the 277 bpm pulse) are dropped first, as the
twin's artefact check drops them. NIS (normalised innovation squared, ``y^2 / S``) is then computed with the
twin's innovation gate (a reading with NIS above ``NIS_GATE`` is not folded in), at quality 1; its mean is about 1
for a consistent filter. This is the level-and-trend filter alone, not the whole twin (no quality weighting, no
step confirmation, no slow filter), so it proposes values and does not prove the twin's behaviour with them.

Nothing here changes the catalogue: the estimates are a proposal (docs/twin.md), because changing the shipped
noise settings would change the twin's outputs, on which a batch-engine rewrite is checked bit for bit.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluation import physionet as pn
from evaluation.datasets import mimic_numerics_events
from twin_state import kalman
from twin_state.catalogue import CATALOGUE, NIS_GATE, Metric
from twin_state.twin import Reading

R_MULTIPLIERS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0)
Q_MULTIPLIERS = (0.01, 0.1, 1.0, 10.0)
LEVEL_NOISE_GRID = (0.0, 0.001, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
"""Absolute q_level values tried, as multiples of the vital's r per minute: r x this / min."""
VITALS = (Metric.HEART_RATE, Metric.RESP_RATE, Metric.SPO2, Metric.TEMPERATURE, Metric.BP_SYSTOLIC,
          Metric.BP_DIASTOLIC)

Series = list[tuple[float, float]]
"""(minutes, value) of one vital of one patient, in time order."""


@dataclass(frozen=True, slots=True)
class Noise:
    r: float
    q_level: float
    q: float

    def json(self) -> dict[str, float]:
        return {"measurement_noise": _sig(self.r), "level_noise": _sig(self.q_level), "process_noise": _sig(self.q)}


def _sig(x: float) -> float:
    return float(f"{x:.3g}")


def catalogue_noise(metric: Metric) -> Noise:
    spec = CATALOGUE[metric]
    return Noise(spec.measurement_noise, spec.level_noise, spec.process_noise)


def series_of(readings: Iterable[Reading]) -> dict[Metric, Series]:
    """Plausible readings per vital, in time order, in minutes."""
    out: dict[Metric, Series] = {}
    for r in readings:
        spec = CATALOGUE.get(r.metric)
        if spec is None or r.metric not in VITALS or not spec.plausible[0] <= r.value <= spec.plausible[1]:
            continue
        out.setdefault(r.metric, []).append((r.measured_at / 60_000.0, r.value))
    for s in out.values():
        s.sort()
    return out


def run(series: Series, noise: Noise, trend_var: float, gate: bool) -> tuple[list[float], float]:
    """(NIS of every reading after the first, summed Gaussian NLL of the innovations); ``gate``: readings with NIS
    above ``NIS_GATE`` are not folded in (the twin's innovation test)."""
    if not series:
        return [], 0.0
    t0, z0 = series[0]
    state = kalman.start(z0, noise.r, trend_var)
    nis: list[float] = []
    nll = 0.0
    last = t0
    for t, z in series[1:]:
        predicted = kalman.predict(state, max(t - last, 0.0), noise.q, noise.q_level)
        y, s = kalman.innovation(predicted, z, noise.r)
        value = y * y / s
        nis.append(value)
        nll += 0.5 * (math.log(s) + value)
        if gate and value > NIS_GATE:
            state, last = predicted, t
            continue
        state, last = kalman.update(predicted, z, noise.r), t
    return nis, nll


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def estimate(groups: Sequence[Series], metric: Metric) -> tuple[Noise, float, float]:
    """The grid's maximum-likelihood (r, q_level, q) for ``metric`` over ``groups`` of series; with the NLL at the
    catalogue's values and at the estimate."""
    base = catalogue_noise(metric)
    trend_var = CATALOGUE[metric].initial_trend_var

    def nll(n: Noise) -> float:
        return sum(run(s, n, trend_var, gate=False)[1] for s in groups)

    best, best_nll = base, nll(base)
    start_nll = best_nll
    for rm, ql, qm in itertools.product(R_MULTIPLIERS, LEVEL_NOISE_GRID, Q_MULTIPLIERS):
        cand = Noise(base.r * rm, base.r * ql, base.q * qm)
        value = nll(cand)
        if value < best_nll:
            best, best_nll = cand, value
    return best, start_nll, best_nll


def nis_summary(groups: Sequence[Series], metric: Metric, noise: Noise) -> dict[str, Any]:
    trend_var = CATALOGUE[metric].initial_trend_var
    values = [v for s in groups for v in run(s, noise, trend_var, gate=True)[0]]
    mean = _mean(values)
    return {"readings": len(values), "mean_nis": None if mean is None else round(mean, 2),
            "median_nis": None if not values else round(sorted(values)[len(values) // 2], 2),
            "share_above_gate": None if not values else round(sum(v > NIS_GATE for v in values) / len(values), 3)}


def load_sources(mimic: Path, physionet: Path | None, stays: int) -> dict[str, dict[Metric, list[Series]]]:
    out: dict[str, dict[Metric, list[Series]]] = {}
    per = series_of(mimic_numerics_events(mimic))
    out["mimic"] = {m: [s] for m, s in per.items()}
    if physionet is not None:
        grouped: dict[Metric, list[Series]] = {}
        for _stem, text in pn._stay_texts(physionet)[:stays]:
            _rid, readings = pn.parse_stay(io.StringIO(text, newline=""))
            for m, s in series_of(r for r in readings if r.metric is not Metric.SPO2).items():
                if len(s) >= 3:
                    grouped.setdefault(m, []).append(s)
        out["physionet"] = grouped
    return out


def evaluate_noise(mimic: Path, physionet: Path | None, stays: int = 400) -> dict[str, Any]:
    """Per source and vital: catalogue noise, the estimate, NIS before and after, the NLL improvement."""
    result: dict[str, Any] = {"stays": stays, "nis_gate": NIS_GATE, "sources": {}}
    for source, per_metric in load_sources(mimic, physionet, stays).items():
        rows: dict[str, Any] = {}
        for metric in VITALS:
            groups = per_metric.get(metric) or []
            if sum(len(s) for s in groups) < 10:
                continue
            est, nll0, nll1 = estimate(groups, metric)
            base = catalogue_noise(metric)
            rows[metric.value] = {
                "catalogue": base.json(), "estimated": est.json(),
                "nis_before": nis_summary(groups, metric, base), "nis_after": nis_summary(groups, metric, est),
                "nll_improvement": round(nll0 - nll1, 1),
                "at_grid_edge": est.r in (base.r * R_MULTIPLIERS[0], base.r * R_MULTIPLIERS[-1])
                or est.q_level == base.r * LEVEL_NOISE_GRID[-1]
                or est.q in (base.q * Q_MULTIPLIERS[0], base.q * Q_MULTIPLIERS[-1]),
            }
        result["sources"][source] = rows
    return result


def noise_markdown(result: dict[str, Any]) -> list[str]:
    md = ["| source | vital | readings | r: catalogue -> estimate | q_level: catalogue -> estimate | "
          "q: catalogue -> estimate | mean NIS before | mean NIS after | share above gate before / after |",
          "|---|---|---:|---|---|---|---:|---:|---|"]
    for source, rows in result["sources"].items():
        for vital, d in rows.items():
            c, e = d["catalogue"], d["estimated"]
            edge = " (grid edge)" if d["at_grid_edge"] else ""
            md.append(f"| {source} | {vital} | {d['nis_before']['readings']} | {c['measurement_noise']:g} -> "
                      f"{e['measurement_noise']:g}{edge} | {c['level_noise']:g} -> {e['level_noise']:g} | "
                      f"{c['process_noise']:g} -> {e['process_noise']:g} | "
                      f"{d['nis_before']['mean_nis']} | {d['nis_after']['mean_nis']} | "
                      f"{d['nis_before']['share_above_gate']} / {d['nis_after']['share_above_gate']} |")
    return md
