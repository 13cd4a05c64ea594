"""A stay's risk of in-hospital death from what the twin showed over 48 hours: features and a logistic model.

The twin's hourly outputs (``HOURLY``: each filtered vital's estimate when it is not stale, consciousness and
oxygen from the last manual observation within its age limit, NEWS2 now with its subscores, the predicted
probabilities) are summarised per stay (``AGGREGATES``: mean over the 48 h, mean over the last 24 h, minimum,
maximum, standard deviation, last value, share of hours present) and weighed by an L2-regularised logistic
regression (fitted by iteratively reweighted least squares). Missing aggregates (a stay with no respiratory rate
charted) take the training set's median; inputs are standardised with the training set's mean and SD.

Only vital signs, consciousness and oxygen go in: no age, no laboratory values, no diagnosis.

The shipped model (``evaluation/physionet2012_set_a.model.json``) was fitted on all of set A; its decision
threshold was chosen on set A's out-of-fold predictions (10-fold cross-validation). Reported on set A itself the
shipped model is in-sample and optimistic: ``cross_validated`` refits it inside each fold, which is the honest
figure for set A. Refit with ``twinmon evaluate physionet2012 ... --fit-model OUT.json``.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

import numpy as np

from twin_state.catalogue import Metric
from twin_state.news2 import Param
from twin_state.risk import Risk, RiskSettings
from twin_state.twin import Twin

MS_PER_MINUTE = 60_000
VITALS = (Metric.HEART_RATE, Metric.RESP_RATE, Metric.BP_SYSTOLIC, Metric.BP_DIASTOLIC, Metric.TEMPERATURE,
          Metric.SPO2)
HOURLY: tuple[str, ...] = (
    *(m.value for m in VITALS), "acvpu", "on_oxygen", "news2", "news2_parameters", "p5_60", "p7_60",
    *(f"sub_{p.value}" for p in Param),
)
"""The twin's outputs recorded at each hour of a stay, in this order (NaN when absent or stale)."""
AGGREGATES = ("mean", "mean_last24h", "min", "max", "sd", "last", "present")
FEATURES: tuple[str, ...] = tuple(f"{h}:{a}" for h in HOURLY for a in AGGREGATES)
DEFAULT_L2 = 10.0
"""Ridge penalty on the standardised weights; 1-50 gave the same cross-validated AUROC on set A (0.815-0.817)."""
FOLDS = 10
SHIPPED = "physionet2012_set_a.model.json"


def hourly_row(twin: Twin, r: Risk, now_ms: int, settings: RiskSettings) -> tuple[float, ...]:
    """The twin at one hour, as ``HOURLY`` values."""
    nan = math.nan
    values: list[float] = []
    for m in VITALS:
        v = twin.vitals.get(m)
        fresh = v is not None and now_ms - v.updated_at <= settings.stale_after_ms.get(m, 0)
        values.append(v.filter.level if v is not None and fresh else nan)
    max_age = settings.manual_max_age_min * MS_PER_MINUTE
    for m in (Metric.CONSCIOUSNESS, Metric.O2_FLOW):
        o = twin.observations.get(m)
        if o is None or now_ms - o.measured_at > max_age:
            values.append(nan)
        else:
            values.append(o.value if m is Metric.CONSCIOUSNESS else float(o.value > 0))
    # Measured parameters only: an assumed "alert" or "air" is the absence of a chart entry, as before.
    assumed = {a.param for a in r.assumed}
    values += [float(r.now.total), float(len(r.now.subscores) - len(assumed)), r.p(5, 60.0), r.p(7, 60.0)]
    values += [float(r.now.subscores[p]) if p in r.now.subscores and p not in assumed else nan for p in Param]
    return tuple(values)


def stay_features(rows: Sequence[Sequence[float]]) -> np.ndarray:
    """``FEATURES`` of one stay from its hourly rows (oldest first); NaN where a series was never present."""
    series = np.asarray(rows, dtype=float).reshape(len(rows), len(HOURLY))
    out = np.full((len(HOURLY), len(AGGREGATES)), np.nan)
    half = len(rows) // 2
    for j in range(len(HOURLY)):
        s = series[:, j]
        present = s[~np.isnan(s)]
        late = series[half:, j]
        late = late[~np.isnan(late)]
        out[j, 6] = len(present) / len(s) if len(s) else 0.0
        if len(present) == 0:
            continue
        out[j, :6] = (present.mean(), late.mean() if len(late) else np.nan, present.min(), present.max(),
                      present.std(), present[-1])
    return out.reshape(-1)


@dataclass(frozen=True)
class LogisticModel:
    features: tuple[str, ...]
    medians: tuple[float, ...]
    means: tuple[float, ...]
    sds: tuple[float, ...]
    weights: tuple[float, ...]
    """Intercept first, then one weight per standardised feature."""
    l2: float
    threshold: float = 0.5
    """Decision threshold on the probability (death predicted at or above it)."""
    trained_on: str = ""

    def _design(self, f: np.ndarray) -> np.ndarray:
        f = np.where(np.isnan(f), np.asarray(self.medians), f)
        z = (f - np.asarray(self.means)) / np.asarray(self.sds)
        return np.column_stack([np.ones(len(z)), z])

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Probability of in-hospital death for each row of ``features`` (stays x ``FEATURES``)."""
        logits = self._design(np.atleast_2d(features)) @ np.asarray(self.weights)
        probabilities: np.ndarray = 1.0 / (1.0 + np.exp(-np.clip(logits, -30.0, 30.0)))
        return probabilities

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> LogisticModel:
        d: dict[str, Any] = json.loads(text)
        for k in ("features", "medians", "means", "sds", "weights"):
            d[k] = tuple(d[k])
        model = cls(**d)
        if model.features != FEATURES:
            raise ValueError("the model's features are not this twinmon's; refit it with --fit-model")
        return model


def fit(features: np.ndarray, labels: np.ndarray, l2: float = DEFAULT_L2, trained_on: str = "") -> LogisticModel:
    """L2-regularised logistic regression by iteratively reweighted least squares (Newton's method)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a feature absent from every stay: median 0 below
        medians = np.nanmedian(features, axis=0)
    medians = np.where(np.isnan(medians), 0.0, medians)
    filled = np.where(np.isnan(features), medians, features)
    means, sds = filled.mean(axis=0), filled.std(axis=0)
    sds = np.where(sds > 1e-9, sds, 1.0)
    model = LogisticModel(FEATURES, tuple(medians), tuple(means), tuple(sds), (), l2, trained_on=trained_on)
    x = model._design(features)
    y = labels.astype(float)
    penalty = np.full(x.shape[1], l2)
    penalty[0] = 0.0  # the intercept is not shrunk
    w = np.zeros(x.shape[1])
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -30.0, 30.0)))
        grad = x.T @ (p - y) + penalty * w
        hess = x.T @ (x * (p * (1.0 - p))[:, None]) + np.diag(penalty)
        delta = np.linalg.solve(hess, grad)
        w -= delta
        if float(np.abs(delta).max()) < 1e-9:
            break
    return LogisticModel(FEATURES, model.medians, model.means, model.sds, tuple(float(v) for v in w), l2,
                         trained_on=trained_on)


def cross_validated(features: np.ndarray, labels: np.ndarray, folds: int = FOLDS, l2: float = DEFAULT_L2,
                    seed: int = 1) -> np.ndarray:
    """Out-of-fold probabilities: each stay scored by a model fitted without its fold (folds stratified by
    outcome, shuffled with ``seed``)."""
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(labels), dtype=int)
    for cls in (0, 1):
        idx = np.flatnonzero(labels == cls)
        fold_of[rng.permutation(idx)] = np.arange(len(idx)) % folds
    out = np.empty(len(labels))
    for k in range(folds):
        test = fold_of == k
        out[test] = fit(features[~test], labels[~test], l2).predict(features[test])
    return out


def shipped() -> LogisticModel:
    """The model fitted on PhysioNet 2012 set A that twinmon ships (see the module docstring)."""
    text = resources.files("evaluation").joinpath(SHIPPED).read_text()
    return LogisticModel.from_json(text)
