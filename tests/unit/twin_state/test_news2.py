"""NEWS2 at every band edge, on both sides, and the rounding rule for estimates between chart values."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cli.main import main
from twin_state.news2 import (
    Inputs,
    Param,
    RiskBand,
    acvpu_score,
    band,
    parse_inputs,
    pulse_score,
    rr_score,
    sbp_score,
    score,
    spo2_scale1_score,
    spo2_scale2_score,
    temp_score,
)

# (value, expected subscore): each edge of the RCP chart from both sides.
RR = [(0, 3), (8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2), (24, 2), (25, 3), (60, 3)]
SPO2_1 = [(70, 3), (91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0)]
SBP = [(60, 3), (90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0), (220, 3), (260, 3)]
PULSE = [(30, 3), (40, 3), (41, 1), (50, 1), (51, 0), (90, 0), (91, 1), (110, 1), (111, 2), (130, 2), (131, 3)]
TEMP = [(34.0, 3), (35.0, 3), (35.1, 1), (36.0, 1), (36.1, 0), (38.0, 0), (38.1, 1), (39.0, 1), (39.1, 2), (41.0, 2)]
SPO2_2_AIR = [(80, 3), (83, 3), (84, 2), (85, 2), (86, 1), (87, 1), (88, 0), (92, 0), (93, 0), (97, 0), (100, 0)]
SPO2_2_O2 = [(83, 3), (84, 2), (87, 1), (88, 0), (92, 0), (93, 1), (94, 1), (95, 2), (96, 2), (97, 3), (100, 3)]


@pytest.mark.parametrize("value,expected", RR)
def test_respiration_rate(value: float, expected: int) -> None:
    assert rr_score(value) == expected


@pytest.mark.parametrize("value,expected", SPO2_1)
def test_spo2_scale_1(value: float, expected: int) -> None:
    assert spo2_scale1_score(value) == expected


@pytest.mark.parametrize("value,expected", SPO2_2_AIR)
def test_spo2_scale_2_on_air(value: float, expected: int) -> None:
    assert spo2_scale2_score(value, on_oxygen=False) == expected


@pytest.mark.parametrize("value,expected", SPO2_2_O2)
def test_spo2_scale_2_on_oxygen(value: float, expected: int) -> None:
    assert spo2_scale2_score(value, on_oxygen=True) == expected


@pytest.mark.parametrize("value,expected", SBP)
def test_systolic_bp(value: float, expected: int) -> None:
    assert sbp_score(value) == expected


@pytest.mark.parametrize("value,expected", PULSE)
def test_pulse(value: float, expected: int) -> None:
    assert pulse_score(value) == expected


@pytest.mark.parametrize("value,expected", TEMP)
def test_temperature(value: float, expected: int) -> None:
    assert temp_score(value) == expected


@pytest.mark.parametrize("code,expected", [("A", 0), ("C", 3), ("V", 3), ("P", 3), ("U", 3)])
def test_consciousness(code: str, expected: int) -> None:
    assert acvpu_score(code) == expected


@pytest.mark.parametrize(
    "fn,value,expected",
    [
        (rr_score, 20.49, 0), (rr_score, 20.5, 2), (rr_score, 20.6, 2), (rr_score, 8.49, 3), (rr_score, 8.5, 1),
        (spo2_scale1_score, 95.49, 1), (spo2_scale1_score, 95.5, 0), (sbp_score, 90.5, 2), (sbp_score, 90.49, 3),
        (sbp_score, 219.49, 0), (sbp_score, 219.5, 3), (pulse_score, 90.5, 1), (pulse_score, 130.49, 2),
        (temp_score, 38.04, 0), (temp_score, 38.05, 1), (temp_score, 35.049, 3), (temp_score, 35.05, 1),
        (temp_score, 39.05, 2), (temp_score, 39.049, 1),
    ],
)
def test_estimates_round_half_up_to_the_chart_resolution(fn: object, value: float, expected: int) -> None:
    assert fn(value) == expected  # type: ignore[operator]


@pytest.mark.parametrize(
    "total,red_flag,expected",
    [(0, False, RiskBand.LOW), (4, False, RiskBand.LOW), (3, True, RiskBand.LOW_MEDIUM), (4, True, RiskBand.LOW_MEDIUM),
     (5, False, RiskBand.MEDIUM), (6, True, RiskBand.MEDIUM), (7, False, RiskBand.HIGH), (20, True, RiskBand.HIGH)],
)
def test_risk_bands(total: int, red_flag: bool, expected: RiskBand) -> None:
    assert band(total, red_flag) == expected


def test_single_three_response_is_a_setting() -> None:
    assert band(3, True, single_three=RiskBand.MEDIUM) is RiskBand.MEDIUM
    assert band(2, False, single_three=RiskBand.MEDIUM) is RiskBand.LOW


def test_full_set_aggregate_and_red_flag() -> None:
    s = score(Inputs(rr=24, spo2=93, on_oxygen=True, sbp=105, pulse=115, temp=38.5, acvpu="A"))
    assert dict(s.subscores) == {Param.RR: 2, Param.SPO2: 2, Param.ON_OXYGEN: 2, Param.SBP: 1, Param.PULSE: 2,
                                 Param.ACVPU: 0, Param.TEMP: 1}
    assert s.total == 10 and s.risk is RiskBand.HIGH and not s.red_flag and not s.partial
    worst = score(Inputs(rr=30, spo2=80, on_oxygen=True, sbp=80, pulse=140, temp=34, acvpu="U"))
    assert worst.total == 20 and worst.red_flag


def test_wearable_only_score_is_partial_and_says_what_is_missing() -> None:
    s = score(Inputs(rr=16, spo2=97, sbp=120, pulse=70, temp=37.0))
    assert s.partial and s.missing == (Param.ON_OXYGEN, Param.ACVPU) and s.total == 0
    assert s.risk is RiskBand.INCOMPLETE


def test_scale_2_saturation_of_93_or_more_scores_only_on_oxygen() -> None:
    assert score(Inputs(spo2=97, spo2_scale=2, on_oxygen=False)).subscores[Param.SPO2] == 0
    assert score(Inputs(spo2=97, spo2_scale=2, on_oxygen=True)).subscores[Param.SPO2] == 3
    assert score(Inputs(spo2=97, spo2_scale=1, on_oxygen=True)).subscores[Param.SPO2] == 0


@pytest.mark.parametrize(
    "doc,fragment",
    [({"spo2": 101}, "spo2 101 is impossible"), ({"temp": 98.6}, "Fahrenheit"), ({"acvpu": "X"}, "acvpu"),
     ({"rr": "fast"}, "rr must be a number"), ({"spo2_scale": 3}, "spo2_scale"), ({"on_oxygen": "yes"}, "on_oxygen"),
     ({"glucose": 5}, "unknown field"), ([1, 2], "JSON object"), ({"temp": 60}, "impossible")],
)
def test_impossible_inputs_say_what_is_wrong(doc: object, fragment: str) -> None:
    out = parse_inputs(doc)
    assert isinstance(out, str) and fragment in out


def test_news2_command_scores_each_line_and_carries_on_after_errors() -> None:
    lines = [
        {"rr": 21, "spo2": 95, "on_oxygen": False, "sbp": 112, "pulse": 95, "temp": 38.2, "acvpu": "A"},
        {"spo2": 101},
        "not json",
        {"rr": 26, "spo2": 97, "spo2_scale": 2, "on_oxygen": True, "pulse": 60},
    ]
    stdin = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n"
    out = CliRunner().invoke(main, ["news2"], input=stdin)
    assert out.exit_code == 0, out.output
    results = [json.loads(line) for line in out.output.splitlines()]
    assert len(results) == 4
    assert results[0] == {"total": 5, "subscores": {"rr": 2, "spo2": 1, "on_oxygen": 0, "sbp": 0, "pulse": 1,
                                                    "acvpu": 0, "temp": 1},
                          "red_flag": False, "risk": "medium", "partial": False, "missing": [], "assumed": []}
    assert "spo2 101 is impossible" in results[1]["error"]
    assert "JSON" in results[2]["error"]
    assert results[3]["subscores"] == {"rr": 3, "spo2": 3, "on_oxygen": 2, "pulse": 0}
    assert results[3]["risk"] == "high" and results[3]["red_flag"] and results[3]["partial"]
    assert results[3]["missing"] == ["sbp", "acvpu", "temp"]
