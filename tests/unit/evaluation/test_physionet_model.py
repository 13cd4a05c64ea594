"""The mortality model over the twin's hourly outputs: features, fitting, cross-validation, the shipped model."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation import physionet_model as model
from evaluation.physionet import auroc

NAN = math.nan


def _rows(values_by_hour: list[float], column: int = 0) -> list[list[float]]:
    rows = []
    for v in values_by_hour:
        row = [NAN] * len(model.HOURLY)
        row[column] = v
        rows.append(row)
    return rows


def _agg(features: np.ndarray, column: int) -> dict[str, float]:
    block = features.reshape(len(model.HOURLY), len(model.AGGREGATES))[column]
    return dict(zip(model.AGGREGATES, block.tolist(), strict=True))


def test_features_summarise_each_series_over_the_hours_it_was_present() -> None:
    # Four hours: present in hours 1, 3 and 4; the last two hours are the "last 24 h" half.
    f = model.stay_features(_rows([80.0, NAN, 100.0, 120.0]))
    a = _agg(f, 0)
    assert a["mean"] == pytest.approx(100.0)
    assert a["mean_last24h"] == pytest.approx(110.0)
    assert (a["min"], a["max"], a["last"]) == (80.0, 120.0, 120.0)
    assert a["sd"] == pytest.approx(np.std([80.0, 100.0, 120.0]))
    assert a["present"] == pytest.approx(0.75)


def test_a_series_never_present_is_missing_not_zero() -> None:
    a = _agg(model.stay_features(_rows([70.0, 71.0])), 1)  # column 1 (respiratory rate) never charted
    assert a["present"] == 0.0
    assert all(math.isnan(a[k]) for k in model.AGGREGATES if k != "present")
    assert len(model.FEATURES) == len(model.HOURLY) * len(model.AGGREGATES)


def _synthetic(n: int, informative: bool, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(model.FEATURES)))
    if informative:
        y = (x[:, 0] - x[:, 5] + rng.normal(scale=0.5, size=n) > 0.8).astype(int)
    else:
        y = (rng.random(n) < 0.2).astype(int)
    x[rng.random(x.shape) < 0.1] = NAN  # missing values take the training median
    return x, y


def test_fit_finds_the_informative_features_and_their_signs() -> None:
    x, y = _synthetic(600, informative=True)
    m = model.fit(x, y)
    w = np.asarray(m.weights[1:])
    assert w[0] > 0 and w[5] < 0
    assert abs(w[0]) > 3 * np.median(np.abs(w))
    p = m.predict(x)
    assert ((p > 0) & (p < 1)).all()
    assert auroc(p.tolist(), y.tolist()) > 0.9


def test_stronger_l2_shrinks_the_weights() -> None:
    x, y = _synthetic(300, informative=True)
    loose, tight = model.fit(x, y, l2=0.1), model.fit(x, y, l2=1000.0)
    assert np.abs(tight.weights[1:]).sum() < 0.5 * np.abs(loose.weights[1:]).sum()


def test_cross_validation_does_not_leak_labels() -> None:
    # Pure noise with more features than a fold can pin down: in-sample the model "finds" signal, out of fold
    # it must not. A leak of the test fold into its own model would show up as an out-of-fold AUROC well above 0.5.
    x, y = _synthetic(300, informative=False)
    in_sample = auroc(model.fit(x, y, l2=0.1).predict(x).tolist(), y.tolist())
    out_of_fold = auroc(model.cross_validated(x, y, l2=0.1).tolist(), y.tolist())
    assert in_sample > 0.85
    assert abs(out_of_fold - 0.5) < 0.12


def test_model_round_trips_through_json_and_refuses_other_features() -> None:
    x, y = _synthetic(200, informative=True)
    m = model.fit(x, y, trained_on="synthetic")
    again = model.LogisticModel.from_json(m.to_json())
    assert again == m
    broken = m.to_json().replace('"heart_rate:mean"', '"heart_rate:median"')
    with pytest.raises(ValueError, match="refit"):
        model.LogisticModel.from_json(broken)


def test_shipped_model_loads_with_a_threshold_chosen_out_of_fold() -> None:
    m = model.shipped()
    assert m.features == model.FEATURES
    assert 0.0 < m.threshold < 1.0
    assert m.trained_on.startswith("physionet2012-set-a")
    # Physiology the model must have learned from set A: a deeper coma (higher ACVPU index) all day is worse.
    base = np.array(m.medians)
    coma = base.copy()
    coma[model.FEATURES.index("acvpu:mean")] = 4.0
    coma[model.FEATURES.index("acvpu:last")] = 4.0
    assert m.predict(coma)[0] > m.predict(base)[0]
