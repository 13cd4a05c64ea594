"""A sustained step into a scoring band reaches the twin's NEWS2 within two readings, for every scored vital and
cadence; the table in docs/step-response.md is this test's output."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from evaluation import step_response
from evaluation.step_response import CADENCES, STEPS, Cell, markdown, period_s, readings_to_reflect, table
from twin_state.catalogue import Metric

DOC = Path(__file__).resolve().parents[3] / "docs" / "step-response.md"
SEEDS = 20
WITHIN = 2

KNOWN_NOISY = {
    (Metric.SPO2, 94.5, "continuous"): "a 2.5-point fall at 10 s in readings of SD 1: two readings cannot tell it "
                                       "from noise without raising noise-driven steps; the noise-free step takes 2",
}
"""Cells whose noisy median exceeds two readings, and why; the noise-free requirement holds for them too."""


@pytest.fixture(scope="module")
def cells() -> list[Cell]:
    return table(seeds=SEEDS)


def test_every_step_is_reflected_within_two_readings(cells: list[Cell]) -> None:
    slow = [c for c in cells if c.noise_free is None or c.noise_free > WITHIN]
    assert not slow, slow
    assert len(cells) == sum(len(s) for s in STEPS.values()) * len(CADENCES)


def test_with_sensor_noise_the_median_step_is_reflected_within_two_readings(cells: list[Cell]) -> None:
    slow = [c for c in cells if (c.metric, c.value, c.cadence) not in KNOWN_NOISY
            and (c.noisy_median is None or c.noisy_median > WITHIN)]
    assert not slow, slow
    for (metric, value, cadence), _why in KNOWN_NOISY.items():
        cell = next(c for c in cells if (c.metric, c.value, c.cadence) == (metric, value, cadence))
        assert cell.noisy_median is not None and cell.noisy_median > WITHIN, "known miss now met: remove it"


def test_a_step_that_does_not_reach_the_band_is_not_reported_as_reflected() -> None:
    # The measure can fail: systolic 118 scores 0, so a step to it never reflects a subscore of 1 (not 112: an
    # estimate is scored by the worse neighbouring chart value, and the cuff's noise takes 112 below 111).
    assert readings_to_reflect(Metric.BP_SYSTOLIC, 900.0, 118.0, 1) is None
    assert readings_to_reflect(Metric.BP_SYSTOLIC, 900.0, 105.0, 1) is not None


def test_the_old_three_reading_gate_would_have_missed_the_cuff(monkeypatch: pytest.MonkeyPatch) -> None:
    # The regression in the issue: a cuff every 15 minutes, 125 -> 85, scored 0 for two more readings.
    import twin_state.twin as twin_module

    monkeypatch.setattr(twin_module, "SUSTAINED_RUN", 3)
    monkeypatch.setattr(twin_module, "STEP_NIS", twin_module.NIS_GATE)
    assert (readings_to_reflect(Metric.BP_SYSTOLIC, period_s(Metric.BP_SYSTOLIC, 900.0), 85.0, 3) or 99) > WITHIN


def test_the_docs_table_is_this_tests_output(cells: list[Cell]) -> None:
    text = markdown(cells, SEEDS)
    if os.environ.get("TWINMON_UPDATE_DOCS") == "1":
        DOC.write_text(text)
    assert DOC.read_text() == text, f"{DOC} is stale: run TWINMON_UPDATE_DOCS=1 pytest {__file__}"
    assert step_response.MAX_READINGS >= 10
