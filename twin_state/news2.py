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
setting: some trusts respond to it as medium); otherwise low. A partial score (a parameter missing) that would
be low is ``incomplete`` instead: the missing parameters could add any number of points, so "low" would be a
claim the data do not support. A partial score at low-medium or above keeps its band (missing parameters can
only add points) and stays flagged partial.

SpO2 on scale 2 with oxygen unknown is scored as if on oxygen (97 % and above scores 3): over-oxygenating a
patient at risk of hypercapnia is what scale 2 exists to catch, and air cannot be told from oxygen by the value.

Rounding of values typed by a person (``score(..., estimate=False)``): round half up to the chart's
resolution before scoring, whole numbers for respiration rate, SpO2, blood pressure and pulse (20.5 -> 21
scores 2; 20.49 -> 20 scores 0) and tenths of a degree for temperature (38.05 -> 38.1 scores 1). This is what a
nurse writing the value on the chart does.

Continuous estimates (a filtered level, ``estimate=True``) are not chart values: one between two chart values
scores the worse of the two (systolic 90.6 scores 3, pulse 90.2 scores 1, temperature 35.04 scores 3 and 38.01
scores 1). An estimate is uncertain by more than half a chart unit, and the twin must not report a patient as
better than the nearest charted reading could be.

Assumptions (``score(..., assume=...)``): the twin scores wearable patients whom no one has assessed as Alert
and on air, and says so in ``Score.assumed``; an assumed parameter is not missing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
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
    INCOMPLETE = "incomplete"
    """Partial and below every response threshold on what was measured: not known to be low."""
    LOW = "low"
    LOW_MEDIUM = "low-medium"
    MEDIUM = "medium"
    HIGH = "high"


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
class Assumed:
    """A parameter scored on a value nobody measured, and the value."""

    param: Param
    value: str

    @property
    def text(self) -> str:
        return _ASSUMED_TEXT.get((self.param, self.value), f"{self.param.value} {self.value}")


ALERT = Assumed(Param.ACVPU, "A")
AIR = Assumed(Param.ON_OXYGEN, "air")
SCALE2_AS_OXYGEN = Assumed(Param.SPO2, "scale 2 as if on oxygen")
_ASSUMED_TEXT = {(Param.ACVPU, "A"): "consciousness alert", (Param.ON_OXYGEN, "air"): "air",
                 (Param.SPO2, "scale 2 as if on oxygen"): "SpO2 scale 2 as if on oxygen"}


_ASSUMED_ORDER = {Param.ACVPU: 0, Param.ON_OXYGEN: 1, Param.SPO2: 2}


def assumed_text(assumed: tuple[Assumed, ...]) -> str:
    return ", ".join(a.text for a in assumed)


@dataclass(frozen=True, slots=True)
class Score:
    total: int
    subscores: Mapping[Param, int]
    red_flag: bool
    risk: RiskBand
    missing: tuple[Param, ...]
    assumed: tuple[Assumed, ...] = ()
    """What was scored on an assumed value (the value is in the subscore); never also in ``missing``."""

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


def worse_neighbour(chart: Callable[[float], int], x: float, per_unit: float = 1.0) -> int:
    """The worse of the scores of the two chart values either side of ``x`` (``per_unit`` chart values per unit:
    1 for whole numbers, 10 for tenths of a degree); a chart value itself scores as charted. The epsilon absorbs
    binary representation (36.1 * 10 is 361.00000000000006)."""
    lo = math.floor(x * per_unit + 1e-9) / per_unit
    hi = math.ceil(x * per_unit - 1e-9) / per_unit
    return max(chart(lo), chart(hi))


def band(total: int, red_flag: bool, single_three: RiskBand = RiskBand.LOW_MEDIUM, partial: bool = False) -> RiskBand:
    if total >= 7:
        return RiskBand.HIGH
    if total >= 5:
        return RiskBand.MEDIUM
    if red_flag:
        return single_three
    return RiskBand.INCOMPLETE if partial else RiskBand.LOW


def score(inputs: Inputs, single_three: RiskBand = RiskBand.LOW_MEDIUM, *, estimate: bool = False,
          assume: Iterable[Assumed] = ()) -> Score:
    """Score what is there; whatever is absent is listed in ``missing`` and the score is partial, unless
    ``assume`` gives a value for it (consciousness ``ALERT``, oxygen ``AIR``), which is then listed in
    ``assumed``. ``estimate``: the values are continuous estimates, scored by the worse neighbouring chart value."""
    fill = {a.param: a for a in assume}
    sub: dict[Param, int] = {}
    missing: list[Param] = []
    assumed: list[Assumed] = []

    def put(param: Param, chart: Callable[[float], int], value: float | None, per_unit: float = 1.0) -> None:
        if value is None:
            missing.append(param)
        else:
            sub[param] = worse_neighbour(chart, value, per_unit) if estimate else chart(value)

    put(Param.RR, rr_score, inputs.rr)
    if inputs.spo2_scale == 2:
        # Oxygen unknown: scored as if on oxygen, the conservative reading of scale 2 (module docstring).
        oxygen = inputs.on_oxygen is not False
        if inputs.spo2 is not None and inputs.on_oxygen is None:
            assumed.append(SCALE2_AS_OXYGEN)
        put(Param.SPO2, lambda v: spo2_scale2_score(v, oxygen), inputs.spo2)
    else:
        put(Param.SPO2, spo2_scale1_score, inputs.spo2)
    if inputs.on_oxygen is not None:
        sub[Param.ON_OXYGEN] = oxygen_score(inputs.on_oxygen)
    elif Param.ON_OXYGEN in fill:
        sub[Param.ON_OXYGEN] = oxygen_score(False)
        assumed.append(fill[Param.ON_OXYGEN])
    else:
        missing.append(Param.ON_OXYGEN)
    put(Param.SBP, sbp_score, inputs.sbp)
    put(Param.PULSE, pulse_score, inputs.pulse)
    if inputs.acvpu is not None:
        sub[Param.ACVPU] = acvpu_score(inputs.acvpu)
    elif Param.ACVPU in fill:
        sub[Param.ACVPU] = acvpu_score(fill[Param.ACVPU].value)
        assumed.append(fill[Param.ACVPU])
    else:
        missing.append(Param.ACVPU)
    put(Param.TEMP, temp_score, inputs.temp, 10.0)
    total = sum(sub.values())
    red_flag = any(s == 3 for s in sub.values())
    return Score(total, sub, red_flag, band(total, red_flag, single_three, bool(missing)), tuple(missing),
                 tuple(sorted(assumed, key=lambda a: _ASSUMED_ORDER[a.param])))


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


def describe(s: Score) -> str:
    """One line for people: "NEWS2 0 incomplete, missing temp; assumed: consciousness alert, air"."""
    text = f"NEWS2 {s.total} {s.risk.value}"
    if s.missing:
        text += f", missing {' '.join(p.value for p in s.missing)}"
    if s.assumed:
        text += f"; assumed: {assumed_text(s.assumed)}"
    return text


def to_json(s: Score) -> dict[str, object]:
    return {
        "total": s.total,
        "subscores": {p.value: v for p, v in s.subscores.items()},
        "red_flag": s.red_flag,
        "risk": s.risk.value,
        "partial": s.partial,
        "missing": [p.value for p in s.missing],
        "assumed": [a.text for a in s.assumed],
    }
