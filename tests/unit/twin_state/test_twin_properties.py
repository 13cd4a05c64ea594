"""Properties of the twin that must hold for any stream, checked on generated ones (hypothesis)."""

from __future__ import annotations

import asyncio
import itertools
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.processor import BatchProcessor, RawMessage
from streams.schema import encode
from twin_state.catalogue import CATALOGUE, Metric
from twin_state.store import InMemoryTwinStore
from twin_state.twin import Outcome, Position, Reading, Twin, new_twin, step

T0 = 1_763_942_400_000
FILTERED = sorted(CATALOGUE)


@st.composite
def streams_of_readings(draw: st.DrawFn, max_size: int = 80) -> list[Reading]:
    n = draw(st.integers(1, max_size))
    t = T0
    out = []
    for i in range(n):
        t += draw(st.sampled_from([0, 1, 500, 5_000, 60_000, 3_600_000, -30_000]))
        metric = draw(st.sampled_from(FILTERED))
        lo, hi = CATALOGUE[metric].possible
        value = draw(st.one_of(st.floats(lo, hi), st.sampled_from([lo, hi, (lo + hi) / 2])))
        quality = draw(st.one_of(st.none(), st.floats(0.0, 1.0)))
        device = draw(st.sampled_from(["wrist", "patch", "cuff"]))
        seq = draw(st.one_of(st.just(i), st.integers(0, max(i, 0))))
        out.append(Reading("p-1", device, metric, value, max(t, T0), seq, quality))
    return out


def fold(readings: list[Reading], twin: Twin | None = None) -> Twin:
    twin = twin or new_twin("p-1")
    for i, r in enumerate(readings):
        twin, _ = step(twin, r, Position(0, i))
    return twin


@settings(max_examples=400, deadline=None)
@given(streams_of_readings())
def test_covariance_stays_symmetric_positive_semidefinite(readings: list[Reading]) -> None:
    twin = new_twin("p-1")
    for i, r in enumerate(readings):
        twin, _ = step(twin, r, Position(0, i))
        for v in twin.vitals.values():
            f = v.filter
            scale = max(1.0, f.p00 * f.p11)
            assert f.p00 >= 0.0 and f.p11 >= 0.0
            assert f.p00 * f.p11 - f.p01 * f.p01 >= -1e-9 * scale
            assert all(math.isfinite(x) for x in (f.level, f.trend, f.p00, f.p01, f.p11))


@settings(max_examples=300, deadline=None)
@given(streams_of_readings(), st.data())
def test_replaying_any_event_is_a_no_op(readings: list[Reading], data: st.DataObject) -> None:
    twin = fold(readings)
    i = data.draw(st.integers(0, len(readings) - 1))
    again, outcome = step(twin, readings[i], Position(0, i))
    assert outcome is Outcome.REDELIVERED and again == twin


@settings(max_examples=300, deadline=None)
@given(streams_of_readings(), st.sampled_from(FILTERED), st.sampled_from([math.nan, math.inf, -math.inf]))
def test_a_non_finite_value_leaves_the_estimates_unchanged(
    readings: list[Reading], metric: Metric, bad: float
) -> None:
    twin = fold(readings)
    after, outcome = step(twin, Reading("p-1", "x", metric, bad, T0 + 10**8, 0), Position(0, 10**6))
    assert outcome is Outcome.IMPLAUSIBLE
    assert after.vitals == twin.vitals


@settings(max_examples=100, deadline=None)
@given(streams_of_readings(max_size=60), st.lists(st.integers(1, 60), max_size=8))
def test_results_do_not_depend_on_how_the_stream_is_split_into_batches(
    readings: list[Reading], cuts: list[int]
) -> None:
    messages = [RawMessage(0, i, b"p-1", encode(r)) for i, r in enumerate(readings)]
    bounds = sorted({0, len(messages), *(c for c in cuts if c < len(messages))})

    async def go() -> tuple[Twin | None, Twin | None]:
        whole, split = InMemoryTwinStore(), InMemoryTwinStore()
        await BatchProcessor(whole).process(messages, T0 + 10**9)
        proc = BatchProcessor(split)
        for a, b in itertools.pairwise(bounds):
            await proc.process(messages[a:b], T0 + 10**9)
        return await whole.get("p-1"), await split.get("p-1")

    whole, split = asyncio.run(go())
    assert whole == split
