"""The processor on packed twins stepped in place (the default) gives what it gives on the readable twins stepped by
``twin.step`` (``packed=False``, the reference): the same outcomes, history points, alert events, saved twins and
alert states, however the stream is cut into batches, redelivered, or picked up by a new processor after a restart."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry

from streams.metrics import Metrics
from streams.processor import BatchProcessor, BatchResult, RawMessage
from streams.schema import encode
from tests.support.ward import NOW, T0, Recorder, profiles, ward
from twin_state.catalogue import Metric
from twin_state.packed import PackedTwin
from twin_state.store import InMemoryTwinStore
from twin_state.twin import Position, Reading, new_twin, step


def batches(messages: Sequence[RawMessage], cuts: Sequence[int]) -> list[Sequence[RawMessage]]:
    bounds = sorted({0, len(messages), *(c for c in cuts if 0 < c < len(messages))})
    return [messages[a:b] for a, b in itertools.pairwise(bounds)]


def summary(r: BatchResult) -> tuple[object, ...]:
    return (r.outcomes, r.newest, r.written, r.alert_events, [(m.offset, why) for m, why in r.dead_letters],
            sorted(t.patient_id for t in r.twins))


async def run(messages: Sequence[RawMessage], cuts: Sequence[int], packed: bool, store: InMemoryTwinStore,
              restart_at: int | None = None) -> tuple[Recorder, BatchProcessor, list[tuple[object, ...]]]:
    recorder = recorder_of = Recorder()
    source = profiles(messages)

    def processor() -> BatchProcessor:
        return BatchProcessor(store, profiles=source, publish=recorder_of, packed=packed)

    proc, results = processor(), []
    for i, batch in enumerate(batches(messages, cuts)):
        if i == restart_at:
            proc = processor()  # a restart: everything resident is gone, the store holds what was saved
        results.append(summary(await proc.process(batch, NOW)))
    return recorder, proc, results


async def assert_same(messages: Sequence[RawMessage], cuts: Sequence[int], restart_at: int | None = None) -> None:
    ref_store, new_store = InMemoryTwinStore(), InMemoryTwinStore()
    ref, ref_proc, ref_results = await run(messages, cuts, False, ref_store, restart_at)
    new, new_proc, new_results = await run(messages, cuts, True, new_store, restart_at)
    assert new_results == ref_results  # per batch: outcomes, newest, writes, alert events, dead letters
    assert new.batches == ref.batches
    pids = await ref_store.patient_ids()
    assert pids and await new_store.patient_ids() == pids
    for pid in pids:
        assert await new_store.get(pid) == await ref_store.get(pid)  # bit for bit, field by field
        assert await new_store.history(pid) == await ref_store.history(pid)
        assert new_store._extras.get(pid) == ref_store._extras.get(pid)
        assert new_proc.alerts(pid) == ref_proc.alerts(pid)
        assert new_proc.twin(pid) == ref_proc.twin(pid)
    assert new_proc.resident == ref_proc.resident
    assert all(isinstance(t, PackedTwin) for t, _, _ in new_proc.residents())


@pytest.mark.parametrize("cut", ["whole", "every 1", "every 13", "random"])
async def test_packed_twins_change_no_outcome_point_alert_or_saved_state(cut: str) -> None:
    messages = ward()
    if cut == "every 1":
        messages = messages[:3000]
    n = len(messages)
    cuts = {"whole": [], "every 1": list(range(n)), "every 13": list(range(0, n, 13)),
            "random": random.Random(11).sample(range(n), 40)}[cut]
    await assert_same(messages, cuts)


async def test_packed_twins_across_a_restart_and_redelivered_batches() -> None:
    messages = ward(seed=3, patients=10, hours=1.5)
    cuts = random.Random(3).sample(range(len(messages)), 25)
    await assert_same(messages, cuts, restart_at=12)
    # A batch delivered twice (after a crash between publish and commit) and one overlapping the last.
    await assert_same([*messages[:2000], *messages[1500:2500], *messages[:2500], *messages[2500:]], [2000, 3000],
                      restart_at=2)


async def test_a_stored_readable_twin_is_picked_up_packed_and_a_future_one_is_repaired() -> None:
    # Twins stored by older code (the readable format), one of them holding a reading from the future that older
    # code let in: the packed processor repairs it as the reference does, and saves what it then steps packed.
    pid, other = "p-old", "p-future"
    start = [Reading(pid, "wrist", Metric.HEART_RATE, 70.0 + i, T0 + i * 1000, i, 0.9) for i in range(30)]
    old = new_twin(pid)
    for i, r in enumerate(start):
        old = step(old, r, Position(0, i))[0]
    future = step(step(new_twin(other), replace(start[0], patient_id=other), Position(0, 100))[0],
                  Reading(other, "wrist", Metric.SPO2, 97.0, NOW + 10**9, 5, 0.9), Position(0, 101))[0]
    later = [RawMessage(0, 200 + i, r.patient_id.encode(), encode(r)) for i, r in enumerate(
        Reading(p, "wrist", m, v, T0 + 60_000 + i * 1000, 100 + i, 0.9)
        for i in range(20) for p, m, v in ((pid, Metric.HEART_RATE, 90.0), (other, Metric.SPO2, 91.0)))]
    results, stores = [], []
    for packed in (False, True):
        store = InMemoryTwinStore([old, future])
        proc = BatchProcessor(store, profiles=profiles(later), publish=Recorder(), packed=packed)
        results.append([summary(await proc.process(later[a:a + 7], NOW)) for a in range(0, len(later), 7)])
        stores.append(store)
    assert results[1] == results[0]
    for p in (pid, other):
        assert await stores[1].get(p) == await stores[0].get(p)
    repaired = await stores[1].get(other)
    assert repaired is not None and repaired.vitals[Metric.SPO2].updated_at < NOW  # the future reading is gone
    assert isinstance(stores[1]._twins[pid], PackedTwin) and not isinstance(stores[0]._twins[pid], PackedTwin)


async def test_the_census_counts_packed_twins_as_readable_ones() -> None:
    messages = ward(seed=5, patients=6, hours=0.5)
    gauges = []
    for packed in (False, True):
        proc = BatchProcessor(InMemoryTwinStore(), profiles=profiles(messages), packed=packed)
        await proc.process(messages, NOW)
        metrics = Metrics(CollectorRegistry())
        await metrics.census(proc.residents(), T0 + 1_800_000, 120_000)
        gauges.append(sorted((s.name, tuple(sorted(s.labels.items())), s.value)
                             for family in metrics.registry.collect() for s in family.samples
                             if s.name.startswith(("twinmon_patients", "twinmon_readings_recent",
                                                   "twinmon_alerts_open"))))
    assert gauges[0] and gauges[1] == gauges[0]
