"""``streams.fastdecode.decode_many`` against its oracle, ``streams.schema.decode``, message for message.

Same type; a ``Reading`` equal field for field (type and repr too, so -0.0 is not 0.0); a ``Rejected`` with the same
reason and detail. On the fuzz corpus of the schema tests (crafted cases and their hypothesis strategy), on the
e2e ingest fuzzer's seeded generator, on simulated readings, and on near-valid messages generated here: each field
mutated, extra and missing keys, wrong types, bool for int, huge, NaN and infinite numbers, non-UTF-8, ids at the
length limit, lookalike characters, keys that are not the patient's, timestamps at and past both bounds, every
metric and unit of the catalogue, manual observations. Batches are decoded whole, so the id cache is warm with ids
that come back wrong (another key, another metric) within the batch.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import random
import time
from collections import Counter
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streams.fastdecode as fd
import tests.e2e.test_fuzz_ingest as ingest_fuzz
import tests.unit.streams.test_fuzz_schema as schema_fuzz
from simulation.simulator import simulate
from streams.fastdecode import decode_many
from streams.schema import EARLIEST_MS, MAX_AHEAD_MS, Reason, Rejected, decode, encode
from twin_state.catalogue import ACVPU, METRICS_BY_NAME, Metric, ObservationSpec
from twin_state.twin import Reading

NOW = schema_fuzz.NOW
Item = tuple[bytes | None, bytes | None, int]
SETTINGS = settings(max_examples=800, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def fields(x: Reading | Rejected) -> list[tuple[type, str]]:
    return [(type(getattr(x, f.name)), repr(getattr(x, f.name))) for f in dataclasses.fields(x)]


def assert_same(items: list[Item]) -> list[Reading | Rejected]:
    expected = [decode(raw, key, t) for raw, key, t in items]
    got = decode_many(items)
    assert len(got) == len(expected)
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        assert type(g) is type(e), (i, items[i], g, e)
        assert g == e, (i, items[i], g, e)
        assert fields(g) == fields(e), (i, items[i], g, e)
        if isinstance(e, Rejected):
            assert isinstance(g, Rejected) and g.reason is e.reason
    return expected


@pytest.fixture(autouse=True)
def cold_cache() -> None:
    fd._patient_keys.clear()
    fd._device_ids.clear()


# --- the corpus of today's fuzz tests -----------------------------------------------------------------------------

def test_crafted_corpus_one_batch_and_each_alone() -> None:
    items = [(raw, key, NOW) for _, raw, key, _ in schema_fuzz.CRAFTED]
    out = assert_same(items)
    assert any(isinstance(r, Reading) for r in out)
    for item in items:
        assert_same([item])


def test_crafted_corpus_twice_with_a_warm_cache_and_other_keys() -> None:
    items = [(raw, key, NOW) for _, raw, key, _ in schema_fuzz.CRAFTED]
    assert_same(items + items)
    assert_same([(raw, k, NOW) for raw, _, _ in items for k in (None, b"p-0001", b"p-0002", b"")])


def test_schema_fuzz_strategy() -> None:
    @SETTINGS
    @given(st.lists(schema_fuzz.messages(), min_size=1, max_size=6))
    def prop(batch: list[tuple[bytes | None, bytes | None]]) -> None:
        assert_same([(raw, key, NOW) for raw, key in batch])

    prop()


def test_e2e_ingest_fuzz_generator_among_simulated_readings() -> None:
    now = int(time.time() * 1000)
    good = [(encode(r), r.patient_id.encode(), now) for _, r in simulate(20, 60, 1.0, 21, ingest_fuzz.T0, 0.2)]
    patients = sorted({r.decode() for _, r, _ in good if r is not None})
    gen = ingest_fuzz.BadGenerator(7, patients)
    bad: list[Item] = []
    for _ in range(6000):
        key, raw = gen.one()
        bad.append((raw, key, now))
    valid_docs = [(orjson.dumps(gen.valid_doc()), None, now) for _ in range(500)]
    rng = random.Random(5)
    items = good + bad + valid_docs
    rng.shuffle(items)
    out = assert_same(items)
    reasons = Counter(r.reason for r in out if isinstance(r, Rejected))
    assert len(reasons) >= 12 and sum(isinstance(r, Reading) for r in out) >= len(good)


# --- near-valid messages --------------------------------------------------------------------------------------------

ID_CHARS = "abcXYZ0189._:-"
LOOKALIKES = ["р-0001", "p‐0001", "ｐ-0001", "p-0001\u200b", "p-0001 ", " p-0001", "p-000１", "p-0001\n", "P-0001",
              "heаrt_rate", "spo２", "/mіn", "％", "Ce l", "mm[Hg]\u00a0", "bpm", "\u202ep-0001"]
valid_ids = st.one_of(st.sampled_from(["p-0001", "p-0002", "wrist-7f3a", "P.1:x_y", "a" * 64, "9", "A-b.c:d_e"]),
                      st.text(ID_CHARS, min_size=1, max_size=63).map(lambda s: "a" + s))
any_ids = st.one_of(valid_ids, st.sampled_from(["a" * 65, "", "-p", ".p", "p/1", "p*", *LOOKALIKES]),
                    st.text(ID_CHARS, max_size=66), st.text(max_size=12))
SPECS = list(METRICS_BY_NAME.values())


@st.composite
def valid_docs(draw: st.DrawFn) -> dict[str, Any]:
    spec = draw(st.sampled_from(SPECS))
    codes = spec.codes if isinstance(spec, ObservationSpec) else ()
    lo, hi = spec.possible
    value: Any
    if codes:
        value = draw(st.sampled_from(codes))
    else:
        value = draw(st.one_of(st.floats(lo, hi), st.integers(math.ceil(lo), math.floor(hi)),
                               st.sampled_from([lo, hi, float(lo), float(hi), -0.0])))
    doc: dict[str, Any] = {
        "v": 1, "patient_id": draw(valid_ids), "device_id": draw(valid_ids), "metric": spec.metric.value,
        "value": value, "unit": draw(st.sampled_from([spec.unit, *spec.unit_aliases])),
        "measured_at": draw(st.one_of(st.integers(EARLIEST_MS, NOW + MAX_AHEAD_MS),
                                      st.sampled_from([EARLIEST_MS, NOW, NOW + MAX_AHEAD_MS]))),
        "seq": draw(st.one_of(st.integers(0, 10**6), st.sampled_from([0, 2**63 - 1, -1, 2**63]))),
        "quality": draw(st.one_of(st.none(), st.floats(0.0, 1.0), st.sampled_from([0, 1, 0.0, 1.0, -0.0]))),
    }
    if doc["quality"] is None and draw(st.booleans()):
        del doc["quality"]
    version = draw(st.sampled_from(["keep", "keep", "absent", "float"]))
    if version == "absent":
        del doc["v"]
    elif version == "float":
        doc["v"] = 1.0
    return doc


NUMBERISH = [True, False, 0, 1, -1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30, -(10**30), 1e308, -1e308,
             5e-324, -0.0, math.nan, math.inf, -math.inf, EARLIEST_MS - 1, EARLIEST_MS, NOW + MAX_AHEAD_MS,
             NOW + MAX_AHEAD_MS + 1, NOW * 1000, NOW // 1000, 1.5, 100.0000001, 350.0, 350.0000001, 46.0, 19.999]
WRONG_TYPES = [None, "", "72", "1", "NaN", "A", "a", [], [1], {}, {"value": 72}, 1.0, float(NOW)]
units = [u for s in SPECS for u in (s.unit, *s.unit_aliases)] + ["", "x", "degF", "[degF]", "/MIN", "Bpm"]
metrics = [*METRICS_BY_NAME, "glucose", "HEART_RATE", "", "Heart_rate", "heart_rate "]
RAW_NUMBERS = [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"9" * 400, b"-" + b"9" * 400, b"-0", b"1E2",
               b"1.0e-400", b"72.000000000000000001", b"18446744073709551616", b"9223372036854775808", b"1.0"]
FIELDS = ["v", "patient_id", "device_id", "metric", "value", "unit", "measured_at", "seq", "quality"]


def replacement(name: str) -> st.SearchStrategy[Any]:
    if name in ("patient_id", "device_id"):
        return st.one_of(any_ids, st.sampled_from(NUMBERISH + WRONG_TYPES))
    if name == "metric":
        return st.sampled_from(metrics + LOOKALIKES + [1, None, ["heart_rate"]])
    if name == "unit":
        return st.sampled_from(units + LOOKALIKES + [0, None, ["/min"]])
    if name == "value":
        return st.one_of(st.sampled_from(NUMBERISH + WRONG_TYPES + [*ACVPU, "a", "X", "AA"]),
                         st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**70), 2**70))
    if name == "v":
        return st.sampled_from([0, 2, 1.0, 1.5, True, False, "1", None, [1], 2**64])
    return st.one_of(st.sampled_from(NUMBERISH + WRONG_TYPES), st.integers(-(2**70), 2**70),
                     st.floats(allow_nan=True, allow_infinity=True))


def serialise(doc: dict[str, Any], how: str) -> bytes:
    if how == "orjson":
        try:
            return orjson.dumps(doc)
        except (orjson.JSONEncodeError, TypeError):
            pass
    return json.dumps(doc, allow_nan=True, ensure_ascii=how == "ascii").encode("utf-8", "surrogatepass")


@st.composite
def near_valid(draw: st.DrawFn) -> Item:
    doc = draw(valid_docs())
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2, 3]))):
        action = draw(st.sampled_from(["replace", "replace", "replace", "drop", "null", "extra", "swap_unit"]))
        name = draw(st.sampled_from(FIELDS))
        if action == "replace":
            doc[name] = draw(replacement(name))
        elif action == "drop":
            doc.pop(name, None)
        elif action == "null":
            doc[name] = None
        elif action == "extra":
            doc[draw(st.sampled_from(["extra", "Value", "patient", "v2", "", "metric "]))] = draw(
                schema_fuzz.json_values)
        else:
            doc["unit"] = draw(st.sampled_from(units))
    raw = serialise(doc, draw(st.sampled_from(["orjson", "ascii", "utf8"])))
    if draw(st.integers(0, 5)) == 0:  # a number written as JSON text no encoder here writes
        name = draw(st.sampled_from(["value", "value", "quality", "measured_at", "seq", "v"]))
        raw = serialise({**doc, name: "__literal__"}, "orjson").replace(b'"__literal__"', draw(st.sampled_from(
            RAW_NUMBERS)))
    damage = draw(st.sampled_from(["none"] * 15 + ["cut", "ff", "bom", "latin1", "spaces"]))
    if damage == "cut":
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif damage == "ff":
        i = draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + b"\xff" + raw[i + 1:]
    elif damage == "bom":
        raw = b"\xef\xbb\xbf" + raw
    elif damage == "latin1":
        raw = raw.replace(b'"p', b'"\xe9p', 1)
    elif damage == "spaces":
        raw = b" \n" + raw + b"\t "
    pid = doc.get("patient_id")
    own = pid.encode("utf-8", "surrogatepass") if isinstance(pid, str) else b"p-0001"
    key = draw(st.sampled_from([own] * 6 + [None, None, b"", own + b"x", own.upper(), b"p-0001", b"\xff"]))
    ingest = draw(st.sampled_from([NOW] * 6 + [NOW - MAX_AHEAD_MS, NOW + 3_600_000, EARLIEST_MS]))
    return raw, key, ingest


seen: Counter[str] = Counter()


def test_near_valid_messages() -> None:
    seen.clear()

    # Derandomised: the coverage asserted below must not depend on the run's seed (a rare reason may go unmet).
    @settings(SETTINGS, derandomize=True)
    @given(st.lists(near_valid(), min_size=1, max_size=8))
    def prop(batch: list[Item]) -> None:
        for r in assert_same(batch):
            seen["reading" if isinstance(r, Reading) else r.reason.value] += 1

    prop()
    # The generator reaches acceptance and nearly every reason of the vitals topic (not too_large, not_object).
    assert seen["reading"] > 200, seen
    reached = {Reason(r) for r in seen if r != "reading"}
    assert schema_fuzz.VITALS_REASONS - reached <= {Reason.TOO_LARGE, Reason.NOT_OBJECT}, seen


@settings(SETTINGS, max_examples=300)
@given(st.lists(valid_docs(), min_size=1, max_size=8), st.data())
def test_the_same_ids_back_with_another_key_metric_or_time(docs: list[dict[str, Any]], data: st.DataObject) -> None:
    """Ids learnt valid earlier in the batch, then back in messages that are wrong in some other way."""
    items: list[Item] = [(orjson.dumps(d), d["patient_id"].encode(), NOW) for d in docs]
    for d in docs:
        name = data.draw(st.sampled_from(FIELDS))
        wrong = {**d, name: data.draw(replacement(name))}
        key = data.draw(st.sampled_from([d["patient_id"].encode(), b"other", None]))
        items.append((serialise(wrong, "orjson"), key, NOW))
    assert_same(items)


# --- every metric and unit of the catalogue on the fast path --------------------------------------------------------

def every_metric_and_unit() -> list[Item]:
    items: list[Item] = []
    for spec in SPECS:
        codes = spec.codes if isinstance(spec, ObservationSpec) else ()
        lo, hi = spec.possible
        values: list[Any] = list(codes) if codes else [lo, hi, float(lo), (lo + hi) / 2, int((lo + hi) // 2)]
        for unit in (spec.unit, *spec.unit_aliases):
            for value in values:
                for quality in (None, 0, 1, 0.5):
                    doc = {"v": 1, "patient_id": "p-1", "device_id": "d-1", "metric": spec.metric.value,
                           "value": value, "unit": unit, "measured_at": NOW, "seq": 7, "quality": quality}
                    items.append((orjson.dumps(doc), b"p-1", NOW))
    return items


def test_every_valid_shape_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    now = 1_763_942_400_000 + 86_400_000
    simulated = [(encode(r), r.patient_id.encode(), now) for _, r in simulate(30, 600, 1.0, 3)]
    items = every_metric_and_unit() + simulated
    expected = [decode(*i) for i in items]
    assert all(isinstance(r, Reading) for r in expected)
    assert {r.metric for r in expected if isinstance(r, Reading)} == set(Metric)
    fallbacks: list[Item] = []

    def counting(raw: bytes | None, key: bytes | None, ingest_ms: int) -> Reading | Rejected:
        fallbacks.append((raw, key, ingest_ms))
        return decode(raw, key, ingest_ms)

    monkeypatch.setattr(fd, "decode", counting)
    assert decode_many(items) == expected
    assert fallbacks == []


# --- the id cache and the Reading builder ---------------------------------------------------------------------------

def test_the_id_cache_is_bounded_and_holds_only_valid_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fd, "ID_CACHE_SIZE", 5)
    docs = [{**schema_fuzz.GOOD, "patient_id": f"p-{i}", "device_id": f"d-{i % 7}"} for i in range(40)]
    bad = [{**schema_fuzz.GOOD, "patient_id": f"p/{i}", "device_id": f"d {i}"} for i in range(10)]
    items = [(orjson.dumps(d), d["patient_id"].encode(), NOW) for d in docs + bad + docs]
    assert_same(items)
    assert 0 < len(fd._patient_keys) <= 5 and 0 < len(fd._device_ids) <= 5
    assert all("/" not in p for p in fd._patient_keys) and all(" " not in d for d in fd._device_ids)
    assert all(fd._patient_keys[p] == p.encode() for p in fd._patient_keys)


def test_a_known_patient_with_another_key_is_the_reference_key_mismatch() -> None:
    raw = orjson.dumps(schema_fuzz.GOOD)
    first, second, third = decode_many([(raw, b"p-0001", NOW), (raw, b"p-0002", NOW), (raw, None, NOW)])
    assert isinstance(first, Reading) and isinstance(third, Reading)
    assert second == decode(raw, b"p-0002", NOW) and isinstance(second, Rejected)
    assert second.reason is Reason.KEY_MISMATCH


def test_readings_are_built_cheaply_and_are_real_readings() -> None:
    # Fails when Reading changes shape, rather than decode_many quietly falling back to the slower constructor.
    assert fd._build is fd._as_reading
    args = ("p-1", "d-1", Metric.SPO2, 97.0, NOW, 3, None)
    made, reference = fd._build(*args), Reading(*args)
    assert type(made) is Reading and made == reference and hash(made) == hash(reference)
    assert repr(made) == repr(reference) and copy.deepcopy(made) == reference
    assert dataclasses.replace(made, seq=4) == dataclasses.replace(reference, seq=4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.seq = 5  # type: ignore[misc]


def test_empty_batch() -> None:
    assert decode_many([]) == []
