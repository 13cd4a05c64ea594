"""The calibration map and its policy-file section: validated, applied between and beyond its knots, part of the
policy id only when present, and without effect on alert decisions at every threshold boundary."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest

from alerts.calibration import Calibration, CalibrationError
from alerts.config import AlertingConfig, ConfigError, parse_config, policy_id, settings_json
from alerts.policy import Level, PolicySettings, clinical_level
from twin_state.news2 import Inputs, score
from twin_state.risk import Risk

SECTION: dict[str, Any] = {"threshold": 5, "horizon_min": 60.0, "raw": [0.0, 0.2, 0.7, 1.0],
                           "calibrated": [0.01, 0.3, 0.9, 0.95], "fitted_on": "test"}


def test_apply_is_linear_between_knots_and_constant_beyond() -> None:
    c = Calibration((0.1, 0.5, 0.9), (0.2, 0.4, 0.8))
    assert c.apply(0.0) == 0.2 and c.apply(0.1) == 0.2
    assert c.apply(0.3) == pytest.approx(0.3)
    assert c.apply(0.5) == pytest.approx(0.4)
    assert c.apply(0.7) == pytest.approx(0.6)
    assert c.apply(0.9) == 0.8 and c.apply(1.0) == 0.8


@pytest.mark.parametrize(("raw", "cal"), [((0.0,), (0.1,)), ((0.0, 0.5), (0.1,)), ((0.5, 0.5), (0.1, 0.2)),
                                          ((0.0, 0.5), (0.3, 0.2)), ((0.0, 1.5), (0.1, 0.2)),
                                          ((0.0, math.nan), (0.1, 0.2))])
def test_knots_that_are_not_a_monotone_map_are_refused(raw: tuple[float, ...], cal: tuple[float, ...]) -> None:
    with pytest.raises(CalibrationError):
        Calibration(raw, cal)


def test_the_section_is_read_and_written_back_and_named_by_the_policy_id() -> None:
    _, config = parse_config({"calibration": SECTION})
    assert config.calibration == Calibration((0.0, 0.2, 0.7, 1.0), (0.01, 0.3, 0.9, 0.95), 5, 60.0, "test")
    assert settings_json(config)["calibration"] == SECTION
    assert parse_config(settings_json(config))[1] == config
    assert policy_id(config) != policy_id(AlertingConfig())
    assert "calibration" not in settings_json(AlertingConfig())  # so every existing policy id is unchanged


@pytest.mark.parametrize("bad", [
    {"raw": [0.0, 1.0]},  # no calibrated
    {**SECTION, "threshold": 7},
    {**SECTION, "raw": [0.0, 0.2, 0.2, 1.0]},
    {**SECTION, "calibrated": [0.5, 0.3, 0.9, 0.95]},
    {**SECTION, "raw": "0 1"},
    {**SECTION, "horizon_min": 30.0},  # not the policy's horizon
    {**SECTION, "extra": 1},
])
def test_bad_sections_name_the_file(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"policy\.toml"):
        parse_config({"calibration": bad}, "policy.toml")


def _risk(p5: float, p7: float = 0.0, total_inputs: Inputs | None = None) -> Risk:
    now = score(total_inputs or Inputs(rr=16, spo2=98, on_oxygen=False, sbp=125, pulse=70, temp=37.0, acvpu=None))
    return Risk(now=now, p_reach={(5, 60.0): p5, (7, 60.0): p7, (5, 30.0): p5, (7, 30.0): p7}, p_param_3={})


@pytest.mark.parametrize("p", [0.0, 0.6999, 0.7, 0.7001, 1.0])
@pytest.mark.parametrize("p7", [0.0, 0.6999, 0.7, 1.0])
def test_alert_decisions_do_not_depend_on_the_calibration(p: float, p7: float) -> None:
    # The threshold stays on the raw score: a calibration that maps 0.7 far below 0.7 changes nothing.
    settings = PolicySettings()
    low = Calibration((0.0, 1.0), (0.0, 0.1))
    _, with_it = parse_config({"calibration": {**SECTION}})
    assert with_it.policy == settings
    level = clinical_level(_risk(p, p7), with_it.policy)
    assert level == clinical_level(_risk(p, p7), replace(settings))
    expected = Level.HIGH if p7 >= 0.7 else Level.MEDIUM if p >= 0.7 else Level.NONE
    assert level == expected
    assert low.apply(p) <= 0.1


def test_the_shipped_calibrated_policy_is_the_default_plus_its_calibration() -> None:
    from pathlib import Path

    from alerts.config import load_config

    root = Path(__file__).resolve().parents[3] / "deploy" / "policy"
    _, calibrated = load_config(root / "calibrated.toml")
    _, default = load_config(root / "default.toml")
    assert calibrated.calibration is not None
    assert replace(calibrated, calibration=None) == default  # the same thresholds: the same alerts
    assert policy_id(calibrated) in (root / "calibrated.toml").read_text()
    c = calibrated.calibration
    assert [c.apply(x) for x in (0.0, 0.7, 1.0)] == sorted(c.apply(x) for x in (0.0, 0.7, 1.0))


def test_the_feed_shows_the_calibrated_probability_beside_the_raw_score_only_with_a_calibration() -> None:
    from feed import presenters
    from twin_state.catalogue import Metric
    from twin_state.twin import Position, Reading, new_twin, step

    t0 = 1_763_942_400_000
    twin = new_twin("p-1")
    seq = 0
    for k in range(40):  # a patient heading for NEWS2 5: fast breathing and pulse, climbing
        for metric, value in ((Metric.HEART_RATE, 100.0 + k), (Metric.RESP_RATE, 19.0 + k / 8),
                              (Metric.SPO2, 95.0), (Metric.BP_SYSTOLIC, 118.0), (Metric.TEMPERATURE, 37.8)):
            seq += 1
            twin, _ = step(twin, Reading("p-1", "dev", metric, value, t0 + k * 60_000, seq, 0.95), Position(0, seq))
    now = t0 + 40 * 60_000
    cal = Calibration((0.0, 0.5, 1.0), (0.1, 0.8, 0.9), 5, 60.0, "test")
    plain = presenters.summary("p-1", twin, None, None, now)
    shown = presenters.summary("p-1", twin, None, None, now, None, cal)
    raw = shown.p_news2_5_60min
    assert raw is not None and raw == plain.p_news2_5_60min and plain.p_news2_5_60min_calibrated is None
    assert shown.p_news2_5_60min_calibrated == round(cal.apply(raw), 4) != raw
    other_horizon = Calibration((0.0, 1.0), (0.2, 0.3), 5, 30.0, "test")
    assert presenters.summary("p-1", twin, None, None, now, None, other_horizon).p_news2_5_60min_calibrated is None


def test_the_shipped_tuned_policy_is_calibrated_toml_with_its_two_tuned_keys() -> None:
    from pathlib import Path

    from alerts.config import load_config

    root = Path(__file__).resolve().parents[3] / "deploy" / "policy"
    _, tuned = load_config(root / "tuned.toml")
    _, calibrated = load_config(root / "calibrated.toml")
    assert tuned.policy.drift_medium == 0.0 and tuned.policy.confirm_medium_ms == 30 * 60_000
    assert replace(tuned, policy=replace(tuned.policy, drift_medium=3.5, confirm_medium_ms=0)) == calibrated
    assert tuned.calibration is not None and tuned.calibration.horizon_min == tuned.policy.predicted_horizon_min
    assert f"Its id: {policy_id(tuned)}" in (root / "tuned.toml").read_text()
