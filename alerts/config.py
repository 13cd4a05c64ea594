"""The policy file: one TOML document that sets every clinical and technical threshold, and its id.

The worker (``TWINMON_POLICY_FILE``) and ``twinmon evaluate --config`` / ``--compare`` read it through the same
``load_config``, so the thresholds that were evaluated are the ones that run. ``policy_id`` names the settings a
file says (not the file's bytes): the same thresholds give the same id whatever the formatting, the key order or
whether a default is written out; alert events and the twin view carry it, so an alert can be traced to the
thresholds that raised it. Reference: docs/policy.md.

Every key is optional; what is not given keeps the code default. Unknown sections or keys are errors, and every
error names the file and the key (``ConfigError``). Each field of the settings dataclasses has exactly one entry
in the key tables below (how to read it from the file, how to write it back); a field without one fails
``tests/unit/alerts/test_policy_file.py`` and ``settings_json`` names it, rather than being silently read as
something else.

No I/O here beyond reading the one file ``load_config`` is given.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Generic, TypeVar

from alerts.calibration import Calibration, CalibrationError
from alerts.policy import Level, PolicySettings, TechnicalSettings
from twin_state.catalogue import CATALOGUE, Metric
from twin_state.errors import TwinmonError
from twin_state.news2 import RiskBand
from twin_state.risk import RiskSettings

ID_PREFIX = "pol-"
ID_HEX = 12


@dataclass(frozen=True, slots=True)
class AlertingConfig:
    """Everything the policy file sets: how risk is computed, when it alerts, how often it runs."""

    risk: RiskSettings = field(default_factory=RiskSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    technical: TechnicalSettings = field(default_factory=TechnicalSettings)
    every_ms: int = 10_000
    """Risk and alert policy run at most this often per patient, in event time: often enough for a 30 s
    persistence rule, rarely enough that risk is not computed for every reading."""
    calibration: Calibration | None = None
    """The map from the raw P(NEWS2 >= 5 within 60 min) to an observed frequency (``alerts.calibration``), shown to
    people; alert decisions do not use it. None (no ``[calibration]`` section): no calibrated value exists."""


class ConfigError(TwinmonError, ValueError):
    """A policy file that does not say what it means; the message names the file and the key."""


# --- value readers -----------------------------------------------------------------------------------------------


def _ms(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{where} must be a positive whole number of milliseconds, got {value!r}")
    return value


def _number(value: object, where: str, lo: float = 0.0, hi: float = math.inf, lo_open: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where} must be a number, got {value!r}")
    if value < lo or (lo_open and value == lo) or value > hi:
        bound = f"{'>' if lo_open else '>='} {lo:g}" + (f" and <= {hi:g}" if math.isfinite(hi) else "")
        raise ConfigError(f"{where} must be {bound}, got {value!r}")
    return float(value)


def _table(value: object, where: str) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table")
    return value


def _check_keys(table: Mapping[str, object], allowed: Iterable[str], where: str) -> None:
    allowed = sorted(allowed)
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; expected some of {', '.join(allowed)}")


_LEVELS = {lv.name.lower(): lv for lv in Level}
_ESCALATING = {name: lv for name, lv in _LEVELS.items() if lv is not Level.NONE}


def _level(value: object, where: str) -> Level:
    if not isinstance(value, str) or value.lower() not in _LEVELS:
        raise ConfigError(f"{where} must be one of {', '.join(_LEVELS)}, got {value!r}")
    return _LEVELS[value.lower()]


def _alerting_level(value: object, where: str) -> Level:
    """A level an alert is raised at: a re-measure prompt cannot be configured away."""
    level = _level(value, where)
    if level is Level.NONE:
        raise ConfigError(f"{where} must be one of {', '.join(_ESCALATING)}, got {value!r}")
    return level


def _escalate_after(value: object, where: str, base: Mapping[Level, int]) -> dict[Level, int]:
    t = _table(value, where)
    _check_keys(t, _ESCALATING, where)
    return {**base, **{_ESCALATING[k]: _ms(v, f"{where}.{k}") for k, v in t.items()}}


def _horizons(value: object, where: str) -> tuple[float, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where} must be a non-empty list of minutes")
    return tuple(_number(v, f"{where}[{i}]") for i, v in enumerate(value))


_BANDS = (RiskBand.LOW_MEDIUM.value, RiskBand.MEDIUM.value)


def _band(value: object, where: str) -> RiskBand:
    if value not in _BANDS:
        raise ConfigError(f"{where} must be one of {', '.join(_BANDS)}, got {value!r}")
    return RiskBand(value)


def _stale_after(value: object, where: str, base: Mapping[Metric, int]) -> dict[Metric, int]:
    t = _table(value, where)
    _check_keys(t, [m.value for m in CATALOGUE], where)
    return {**base, **{Metric(k): _ms(v, f"{where}.{k}") for k, v in t.items()}}


# --- the key tables: one entry per dataclass field ---------------------------------------------------------------

S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class Key(Generic[S]):
    """One key of the file: ``read(value, where, base)`` gives the field's value (``base`` is the settings the
    file overrides, for tables merged into the defaults); ``show(value)`` is the field in the file's own terms."""

    read: Callable[[object, str, S], Any]
    show: Callable[[Any], Any] = lambda v: v


def _ms_key() -> Key[Any]:
    return Key(lambda v, at, _: _ms(v, at))


def _ms_or_zero_key() -> Key[Any]:
    """Milliseconds, or 0 for "off"."""
    return Key(lambda v, at, _: 0 if v == 0 and not isinstance(v, bool) else _ms(v, at))


def _number_key(lo: float = 0.0, hi: float = math.inf, lo_open: bool = True) -> Key[Any]:
    return Key(lambda v, at, _: _number(v, at, lo, hi, lo_open))


POLICY_KEYS: Mapping[str, Key[PolicySettings]] = {
    "persist_ms": _ms_key(),
    "clear_ms": _ms_key(),
    "escalate_after_ms": Key(lambda v, at, base: _escalate_after(v, at, base.escalate_after_ms),
                             lambda m: {lv.name.lower(): ms for lv, ms in sorted(m.items())}),
    "single_three": Key(lambda v, at, _: _level(v, at), lambda lv: lv.name.lower()),
    "predicted_medium": _number_key(0.0, 1.0),
    "predicted_high": _number_key(0.0, 1.0),
    "predicted_horizon_min": _number_key(),
    "drift_medium": _number_key(lo_open=False),
    "confirm_medium_ms": _ms_or_zero_key(),
    "unconfirmed_level": Key(lambda v, at, _: _alerting_level(v, at), lambda lv: lv.name.lower()),
    "unconfirmed_min_gap_ms": _ms_key(),
    "exertion_hold_max_ms": _ms_or_zero_key(),
    "exertion_activity": _number_key(),
    "exertion_recovery_ms": _ms_or_zero_key(),
}
RISK_KEYS: Mapping[str, Key[RiskSettings]] = {
    "horizons_min": Key(lambda v, at, _: _horizons(v, at), list),
    "manual_max_age_min": _number_key(),
    "acvpu_max_age_min": _number_key(),
    "single_three": Key(lambda v, at, _: _band(v, at), lambda b: b.value),
    "stale_after_ms": Key(lambda v, at, base: _stale_after(v, at, base.stale_after_ms),
                          lambda m: {metric.value: ms for metric, ms in sorted(m.items())}),
    "slow_persistence_min": _number_key(lo_open=False),
}
TECHNICAL_KEYS: Mapping[str, Key[TechnicalSettings]] = {
    "no_data_after_ms": _ms_key(),
    "quality_floor": _number_key(0.0, 1.0, lo_open=False),
    "quality_min_readings": _number_key(0.0, lo_open=False),
}
EVALUATION_KEYS: Mapping[str, Key[AlertingConfig]] = {
    "every_ms": _ms_key(),
}
SECTIONS: Mapping[str, tuple[str, Mapping[str, Key[Any]]]] = {
    # file section -> (field of AlertingConfig it sets, or "" for AlertingConfig's own scalar fields; its keys)
    "policy": ("policy", POLICY_KEYS),
    "risk": ("risk", RISK_KEYS),
    "technical": ("technical", TECHNICAL_KEYS),
    "evaluation": ("", EVALUATION_KEYS),
}


_NESTED = frozenset(attr for attr, _ in SECTIONS.values() if attr)
CALIBRATION_SECTION = "calibration"
"""An optional section of its own: data fitted offline, not a threshold; absent from ``settings_json`` (and so from
the policy id) when the file has none, so a file without it keeps the id it had."""
CALIBRATION_KEYS = ("threshold", "horizon_min", "raw", "calibrated", "fitted_on")


def _calibration(value: object, where: str) -> Calibration:
    t = _table(value, where)
    _check_keys(t, CALIBRATION_KEYS, where)
    for key in ("raw", "calibrated"):
        if key not in t:
            raise ConfigError(f"{where}: {key} is required")
    knots = {}
    for key in ("raw", "calibrated"):
        v = t[key]
        if not isinstance(v, list):
            raise ConfigError(f"{where}.{key} must be a list of numbers in [0, 1]")
        knots[key] = tuple(_number(x, f"{where}.{key}[{i}]", 0.0, 1.0, lo_open=False) for i, x in enumerate(v))
    threshold = t.get("threshold", 5)
    if threshold != 5 or isinstance(threshold, bool):
        raise ConfigError(f"{where}.threshold must be 5 (the only calibrated threshold), got {threshold!r}")
    horizon = _number(t.get("horizon_min", 60.0), f"{where}.horizon_min")
    fitted_on = t.get("fitted_on", "")
    if not isinstance(fitted_on, str):
        raise ConfigError(f"{where}.fitted_on must be a string")
    try:
        return Calibration(knots["raw"], knots["calibrated"], 5, horizon, fitted_on)
    except CalibrationError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def calibration_json(c: Calibration) -> dict[str, Any]:
    """The ``[calibration]`` section in the file's own terms."""
    return {"threshold": c.threshold, "horizon_min": c.horizon_min, "raw": list(c.raw),
            "calibrated": list(c.calibrated), "fitted_on": c.fitted_on}


def _section(table: Mapping[str, object], base: S, keys: Mapping[str, Key[S]], where: str) -> S:
    _check_keys(table, keys, where)
    changes = {name: keys[name].read(value, f"{where}.{name}", base) for name, value in table.items()}
    return replace(base, **changes)  # type: ignore[type-var]  # S is always a settings dataclass


# --- the file ----------------------------------------------------------------------------------------------------


def parse_config(doc: Mapping[str, object], source: str = "config",
                 base: AlertingConfig | None = None) -> tuple[str, AlertingConfig]:
    """``(name, evaluation)`` from a parsed TOML document: ``base`` (default: the defaults) with its overrides.

    ``name`` labels reports (default: the file's stem); it is not part of the policy id."""
    out = base or AlertingConfig()
    _check_keys(doc, ("name", *SECTIONS, CALIBRATION_SECTION), source)
    name = doc.get("name", Path(source).stem)
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{source}: name must be a non-empty string")
    for section, (attr, keys) in SECTIONS.items():
        if section not in doc:
            continue
        table = _table(doc[section], f"{source}: [{section}]")
        if attr:
            out = replace(out, **{attr: _section(table, getattr(out, attr), keys, f"{source}: {section}")})
        else:
            out = _section(table, out, keys, f"{source}: {section}")
    if CALIBRATION_SECTION in doc:
        out = replace(out, calibration=_calibration(doc[CALIBRATION_SECTION], f"{source}: {CALIBRATION_SECTION}"))
    policy, risk_settings = out.policy, out.risk
    if out.calibration is not None and out.calibration.horizon_min != policy.predicted_horizon_min:
        raise ConfigError(f"{source}: calibration.horizon_min {out.calibration.horizon_min:g} is not "
                          f"policy.predicted_horizon_min {policy.predicted_horizon_min:g}")
    if policy.predicted_horizon_min not in risk_settings.horizons_min:
        raise ConfigError(
            f"{source}: policy.predicted_horizon_min {policy.predicted_horizon_min:g} is not one of "
            f"risk.horizons_min ({', '.join(f'{h:g}' for h in risk_settings.horizons_min)})")
    return name.strip(), out


def load_config(path: Path | str) -> tuple[str, AlertingConfig]:
    """A policy file; raises ``ConfigError`` with the file and the key named."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            doc = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML ({exc})") from None
    return parse_config(doc, str(p))


def load_policy(path: Path | str | None) -> tuple[str, AlertingConfig]:
    """What a process runs: the policy file at ``path`` (``load_config``), or the code defaults without one."""
    return ("defaults", AlertingConfig()) if not path else load_config(path)


def _shown(settings: object, keys: Mapping[str, Key[Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(settings):  # type: ignore[arg-type]  # always a settings dataclass
        if isinstance(settings, AlertingConfig) and (f.name in _NESTED or f.name == CALIBRATION_SECTION):
            continue
        key = keys.get(f.name)
        if key is None:
            raise TypeError(f"{type(settings).__name__}.{f.name} has no key in alerts.config: add one, with its "
                            "reader, so that the policy file can set it and the policy id covers it")
        out[f.name] = key.show(getattr(settings, f.name))
    return out


def settings_json(e: AlertingConfig) -> dict[str, Any]:
    """Every setting, in the policy file's own terms (a file with exactly these keys gives ``e`` back)."""
    out = {section: _shown(getattr(e, attr) if attr else e, keys) for section, (attr, keys) in SECTIONS.items()}
    if e.calibration is not None:
        out[CALIBRATION_SECTION] = calibration_json(e.calibration)
    return out


def policy_id(e: AlertingConfig) -> str:
    """A short stable id of the settings: "pol-" and 12 hex digits of the BLAKE2b hash of their canonical JSON."""
    canonical = json.dumps(settings_json(e), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return ID_PREFIX + hashlib.blake2b(canonical.encode(), digest_size=ID_HEX // 2).hexdigest()

