"""NEWS2 (Royal College of Physicians, 2017), exactly as charted.

| parameter | 3 | 2 | 1 | 0 | 1 | 2 | 3 |
|---|---|---|---|---|---|---|---|
| respiration rate /min | <=8 | | 9-11 | 12-20 | | 21-24 | >=25 |
| SpO2 scale 1 % | <=91 | 92-93 | 94-95 | >=96 | | | |
| SpO2 scale 2 % | <=83 | 84-85 | 86-87 | 88-92, >=93 on air | 93-94 on O2 | 95-96 on O2 | >=97 on O2 |
| air or oxygen | | oxygen | | air | | | |
| systolic BP mmHg | <=90 | 91-100 | 101-110 | 111-219 | | | >=220 |
| pulse /min | <=40 | | 41-50 | 51-90 | 91-110 | 111-130 | >=131 |
| consciousness | | | | Alert | | | C, V, P or U |
| temperature C | <=35.0 | | 35.1-36.0 | 36.1-38.0 | 38.1-39.0 | >=39.1 | |

Aggregate 0-20. Risk: 7 or more high; 5-6 medium; otherwise a single parameter scoring 3 is low-medium (a
setting: some trusts respond to it as medium); otherwise low.

Rounding rule for estimates that are not whole chart values (a filtered respiratory rate of 20.6): round half
up to the chart's resolution before scoring, whole numbers for respiration rate, SpO2, blood pressure and
pulse (20.5 -> 21 scores 2; 20.49 -> 20 scores 0) and tenths of a degree for temperature (38.05 -> 38.1 scores 1).
This is what a nurse writing the value on the chart does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from twin_state.catalogue import ACVPU


class Param(StrEnum):
    RR = "rr"
    SPO2 = "spo2"
    ON_OXYGEN = "on_oxygen"
    SBP = "sbp"
    PULSE = "pulse"
    ACVPU = "acvpu"
    TEMP = "temp"


class RiskBand(StrEnum):
    LOW = "low"
    LOW_MEDIUM = "low-medium"
    MEDIUM = "medium"
    HIGH = "high"


BAND_ORDER = {RiskBand.LOW: 0, RiskBand.LOW_MEDIUM: 1, RiskBand.MEDIUM: 2, RiskBand.HIGH: 3}


@dataclass(frozen=True, slots=True)
class Inputs:
    rr: float | None = None
    spo2: float | None = None
    on_oxygen: bool | None = None
    sbp: float | None = None
    pulse: float | None = None
    temp: float | None = None
    acvpu: str | None = None
    spo2_scale: int = 1


@dataclass(frozen=True, slots=True)
class Score:
    total: int
    subscores: Mapping[Param, int]
    red_flag: bool
    risk: RiskBand
    missing: tuple[Param, ...]

    @property
    def partial(self) -> bool:
        return bool(self.missing)


def whole(x: float) -> int:
    """Round half up to a whole number (the chart's resolution for RR, SpO2, BP and pulse)."""
    return math.floor(x + 0.5)


def tenths(x: float) -> int:
    """Temperature in tenths of a degree, rounded half up; the epsilon absorbs binary representation
    (38.05 is stored as 38.04999...)."""
    return math.floor(x * 10.0 + 0.5 + 1e-9)


def rr_score(rr: float) -> int:
    v = whole(rr)
    if v <= 8:
        return 3
    if v <= 11:
        return 1
    if v <= 20:
        return 0
    if v <= 24:
        return 2
    return 3


def spo2_scale1_score(spo2: float) -> int:
    v = whole(spo2)
    if v <= 91:
        return 3
    if v <= 93:
        return 2
    if v <= 95:
        return 1
    return 0


def spo2_scale2_score(spo2: float, on_oxygen: bool) -> int:
    v = whole(spo2)
    if v <= 83:
        return 3
    if v <= 85:
        return 2
    if v <= 87:
        return 1
    if v <= 92 or not on_oxygen:
        return 0
    if v <= 94:
        return 1
    if v <= 96:
        return 2
    return 3


def oxygen_score(on_oxygen: bool) -> int:
    return 2 if on_oxygen else 0


def sbp_score(sbp: float) -> int:
    v = whole(sbp)
    if v <= 90:
        return 3
    if v <= 100:
        return 2
    if v <= 110:
        return 1
    if v <= 219:
        return 0
    return 3


def pulse_score(pulse: float) -> int:
    v = whole(pulse)
    if v <= 40:
        return 3
    if v <= 50:
        return 1
    if v <= 90:
        return 0
    if v <= 110:
        return 1
    if v <= 130:
        return 2
    return 3


def temp_score(temp: float) -> int:
    v = tenths(temp)
    if v <= 350:
        return 3
    if v <= 360:
        return 1
    if v <= 380:
        return 0
    if v <= 390:
        return 1
    return 2


def acvpu_score(code: str) -> int:
    return 0 if code == "A" else 3


def band(total: int, red_flag: bool, single_three: RiskBand = RiskBand.LOW_MEDIUM) -> RiskBand:
    if total >= 7:
        return RiskBand.HIGH
    if total >= 5:
        return RiskBand.MEDIUM
    if red_flag:
        return single_three
    return RiskBand.LOW


def score(inputs: Inputs, single_three: RiskBand = RiskBand.LOW_MEDIUM) -> Score:
    """Score what is there; whatever is absent is listed in ``missing`` and the score is partial."""
    sub: dict[Param, int] = {}
    missing: list[Param] = []
    if inputs.rr is not None:
        sub[Param.RR] = rr_score(inputs.rr)
    else:
        missing.append(Param.RR)
    if inputs.spo2 is not None:
        if inputs.spo2_scale == 2:
            sub[Param.SPO2] = spo2_scale2_score(inputs.spo2, bool(inputs.on_oxygen))
        else:
            sub[Param.SPO2] = spo2_scale1_score(inputs.spo2)
    else:
        missing.append(Param.SPO2)
    if inputs.on_oxygen is not None:
        sub[Param.ON_OXYGEN] = oxygen_score(inputs.on_oxygen)
    else:
        missing.append(Param.ON_OXYGEN)
    if inputs.sbp is not None:
        sub[Param.SBP] = sbp_score(inputs.sbp)
    else:
        missing.append(Param.SBP)
    if inputs.pulse is not None:
        sub[Param.PULSE] = pulse_score(inputs.pulse)
    else:
        missing.append(Param.PULSE)
    if inputs.acvpu is not None:
        sub[Param.ACVPU] = acvpu_score(inputs.acvpu)
    else:
        missing.append(Param.ACVPU)
    if inputs.temp is not None:
        sub[Param.TEMP] = temp_score(inputs.temp)
    else:
        missing.append(Param.TEMP)
    total = sum(sub.values())
    red_flag = any(s == 3 for s in sub.values())
    return Score(total, sub, red_flag, band(total, red_flag, single_three), tuple(missing))


# Bounds for people typing values into `twinmon news2`: outside them the input is a mistake, not a patient.
_LIMITS = {"rr": (0.0, 120.0), "spo2": (0.0, 100.0), "sbp": (0.0, 320.0), "pulse": (0.0, 350.0)}
_TEMP_C = (25.0, 45.0)
_KEYS = {"rr", "spo2", "spo2_scale", "on_oxygen", "sbp", "pulse", "temp", "acvpu"}


def parse_inputs(doc: object) -> Inputs | str:
    """Inputs from one JSON object of ``twinmon news2``, or what is wrong with it, in words."""
    if not isinstance(doc, dict):
        return "each line must be a JSON object"
    unknown = sorted(set(doc) - _KEYS)
    if unknown:
        return f"unknown field(s) {', '.join(map(str, unknown))}; expected some of {', '.join(sorted(_KEYS))}"
    values: dict[str, float] = {}
    for key, (lo, hi) in _LIMITS.items():
        v = doc.get(key)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            return f"{key} must be a number"
        if not lo <= v <= hi:
            return f"{key} {v} is impossible (expected {lo:g}..{hi:g})"
        values[key] = float(v)
    temp = doc.get("temp")
    if temp is not None:
        if isinstance(temp, bool) or not isinstance(temp, int | float) or not math.isfinite(temp):
            return "temp must be a number"
        if 90.0 <= temp <= 115.0:
            return f"temp {temp} looks like Fahrenheit; NEWS2 uses degrees Celsius"
        if not _TEMP_C[0] <= temp <= _TEMP_C[1]:
            return f"temp {temp} is impossible (expected {_TEMP_C[0]:g}..{_TEMP_C[1]:g} degrees Celsius)"
    scale = doc.get("spo2_scale", 1)
    if scale not in (1, 2) or isinstance(scale, bool):
        return "spo2_scale must be 1 or 2"
    on_oxygen = doc.get("on_oxygen")
    if on_oxygen is not None and not isinstance(on_oxygen, bool):
        return "on_oxygen must be true or false"
    acvpu = doc.get("acvpu")
    if acvpu is not None and acvpu not in ACVPU:
        return f"acvpu must be one of {', '.join(ACVPU)}"
    return Inputs(
        rr=values.get("rr"), spo2=values.get("spo2"), on_oxygen=on_oxygen, sbp=values.get("sbp"),
        pulse=values.get("pulse"), temp=None if temp is None else float(temp), acvpu=acvpu, spo2_scale=scale,
    )


def to_json(s: Score) -> dict[str, object]:
    return {
        "total": s.total,
        "subscores": {p.value: v for p, v in s.subscores.items()},
        "red_flag": s.red_flag,
        "risk": s.risk.value,
        "partial": s.partial,
        "missing": [p.value for p in s.missing],
    }
