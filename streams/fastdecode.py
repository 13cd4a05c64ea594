"""A batch's ``vitals`` messages decoded at once, the common well-formed reading on a fast path.

``decode_many`` returns exactly what ``streams.schema.decode`` returns for each message, in order: the same
``Reading`` field for field, the same ``Rejected`` reason and detail. The fast path only ever accepts: it
recognises a message that ``decode`` would certainly accept, with cheap exact-type tests, a table of the
catalogue's (metric, unit) pairs and a cache of ids already seen to match ``ID_PATTERN``, and builds its
``Reading``. Anything else (any doubt, any failure, any exception) goes to ``decode`` itself, so every rejection
and every unusual acceptance (``"v": 1.0``, an integer beyond 64 bits) comes from the reference code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, cast

import orjson

from streams.schema import EARLIEST_MS, ID_PATTERN, MAX_AHEAD_MS, MAX_MESSAGE_BYTES, SCHEMA_VERSION, Rejected, decode
from twin_state.catalogue import METRICS_BY_NAME, Metric, ObservationSpec, accepts_unit
from twin_state.twin import Reading

ID_CACHE_SIZE = 1 << 17
"""Distinct valid ids remembered, per cache (patient ids, device ids); a full cache starts again from empty. Both
full take about 29 MiB (ids like the simulator's). Validity is a property of the string alone, so the caches never
go stale; a churn of new ids only costs the regex again."""

MAX_SEQ = 2**63

_Spec = tuple[Metric, float, float, dict[str, float] | None]
"""The metric, its possible range, and for coded observations each code's value."""


def _specs() -> dict[str, dict[str, _Spec]]:
    """Per metric name, per accepted unit (the canonical one and its aliases), what a reading of it needs."""
    specs: dict[str, dict[str, _Spec]] = {}
    for name, spec in METRICS_BY_NAME.items():
        codes = spec.codes if isinstance(spec, ObservationSpec) else ()
        entry: _Spec = (spec.metric, float(spec.possible[0]), float(spec.possible[1]),
                        {c: float(i) for i, c in enumerate(codes)} if codes else None)
        specs[name] = {u: entry for u in (spec.unit, *spec.unit_aliases) if accepts_unit(spec, u)}
    return specs


_SPECS = _specs()

_patient_keys: dict[str, bytes] = {}
"""Patient ids seen to be valid, each with the message key it must come with (its UTF-8 bytes)."""
_device_ids: set[str] = set()
"""Device ids seen to be valid."""

_FIELDS = ("patient_id", "device_id", "metric", "value", "measured_at", "seq", "quality")


class _Unfrozen:
    """``Reading``'s layout without its frozen ``__setattr__``: filled in plain attribute stores, then made a
    ``Reading`` by ``__class__`` assignment (which CPython allows between classes of the same slots)."""

    __slots__ = _FIELDS

    def __init__(self, patient_id: str, device_id: str, metric: Metric, value: float, measured_at: int, seq: int,
                 quality: float | None) -> None:
        self.patient_id = patient_id
        self.device_id = device_id
        self.metric = metric
        self.value = value
        self.measured_at = measured_at
        self.seq = seq
        self.quality = quality


def _as_reading(patient_id: str, device_id: str, metric: Metric, value: float, measured_at: int, seq: int,
                quality: float | None) -> Reading:
    r: Any = _Unfrozen(patient_id, device_id, metric, value, measured_at, seq, quality)
    r.__class__ = Reading
    return cast(Reading, r)


def _reading_builder() -> Callable[[str, str, Metric, float, int, int, float | None], Reading]:
    """How a ``Reading`` is made here. ``Reading`` is a frozen, slotted dataclass with no ``__post_init__``: its
    ``__init__`` only stores the seven fields, each through ``object.__setattr__``; ``_as_reading`` stores them
    at a third of the cost. If ``Reading`` ever changes shape (another field, validation after init, another
    ``__init__``, no slots), or the result is not the same, this falls back to calling ``Reading`` itself."""
    try:
        plain = (dataclasses.is_dataclass(Reading) and tuple(f.name for f in dataclasses.fields(Reading)) == _FIELDS
                 and getattr(Reading, "__slots__", None) == _FIELDS and not hasattr(Reading, "__post_init__")
                 and Reading.__new__ is object.__new__ and Reading.__bases__ == (object,))
        sample = ("p", "d", Metric.HEART_RATE, 1.0, 2, 3, 0.5)
        made = _as_reading(*sample)
        same = type(made) is Reading and made == Reading(*sample) and repr(made) == repr(Reading(*sample))
    except TypeError:  # "object layout differs"
        return Reading
    return _as_reading if plain and same else Reading


_build = _reading_builder()


def _learn_patient(patient_id: Any) -> bytes | None:
    if type(patient_id) is not str or ID_PATTERN.fullmatch(patient_id) is None:
        return None
    if len(_patient_keys) >= ID_CACHE_SIZE:
        _patient_keys.clear()
    key = _patient_keys[patient_id] = patient_id.encode()
    return key


def _learn_device(device_id: Any) -> bool:
    if type(device_id) is not str or ID_PATTERN.fullmatch(device_id) is None:
        return False
    if len(_device_ids) >= ID_CACHE_SIZE:
        _device_ids.clear()
    _device_ids.add(device_id)
    return True


def _fast(raw: bytes | None, key: bytes | None, ingest_ms: int) -> Reading | None:
    """The ``Reading`` that ``decode`` certainly returns for this message, or None: ask ``decode``. May raise
    (not JSON, a missing field, an unhashable value), which also means: ask ``decode``."""
    if raw is None or len(raw) > MAX_MESSAGE_BYTES:
        return None
    doc = orjson.loads(raw)
    if type(doc) is not dict:
        return None
    v = doc.get("v", SCHEMA_VERSION)
    if type(v) is not int or v != SCHEMA_VERSION:
        return None
    by_unit = _SPECS.get(doc["metric"])
    if by_unit is None:
        return None
    spec = by_unit.get(doc["unit"])
    if spec is None:
        return None
    metric, lo, hi, codes = spec
    value = doc["value"]
    if codes is not None:
        fvalue = codes.get(value)
        if fvalue is None:
            return None
    elif type(value) is float:
        fvalue = value
    elif type(value) is int:
        fvalue = float(value)  # orjson's integers are within 64 bits
    else:
        return None
    if not lo <= fvalue <= hi:  # also false for NaN
        return None
    measured_at = doc["measured_at"]
    if type(measured_at) is not int or not EARLIEST_MS <= measured_at <= ingest_ms + MAX_AHEAD_MS:
        return None
    seq = doc["seq"]
    if type(seq) is not int or not 0 <= seq < MAX_SEQ:
        return None
    quality = doc.get("quality")
    fquality: float | None
    if quality is None:
        fquality = None
    elif type(quality) is float:
        fquality = quality
    elif type(quality) is int:
        fquality = float(quality)
    else:
        return None
    if fquality is not None and not 0.0 <= fquality <= 1.0:
        return None
    patient_id, device_id = doc["patient_id"], doc["device_id"]
    expected_key = _patient_keys.get(patient_id)
    if expected_key is None and (expected_key := _learn_patient(patient_id)) is None:
        return None
    if key is not None and key != expected_key:
        return None
    if device_id not in _device_ids and not _learn_device(device_id):
        return None
    return _build(patient_id, device_id, metric, fvalue, measured_at, seq, fquality)


def decode_many(items: Iterable[tuple[bytes | None, bytes | None, int]]) -> list[Reading | Rejected]:
    """``[decode(raw, key, ingest_ms) for raw, key, ingest_ms in items]``, faster. Never raises on bad input."""
    out: list[Reading | Rejected] = []
    append = out.append
    for raw, key, ingest_ms in items:
        try:
            reading = _fast(raw, key, ingest_ms)
        except Exception:  # not JSON, a missing field, an unhashable value: the reference says what it is
            reading = None
        append(decode(raw, key, ingest_ms) if reading is None else reading)
    return out
