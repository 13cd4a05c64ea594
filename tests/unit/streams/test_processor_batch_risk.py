"""A batch's risks computed together (``risk_many``) give what evaluating each reading's patient at once (``risk``)
gave: the same alert events in the same order, the same twins and the same saved alert states, however the stream is
cut into batches."""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Sequence

import pytest

from alerts.policy import AlertEvent, Condition, Kind
from simulation.simulator import simulate
from streams.processor import BatchProcessor, RawMessage
from streams.schema import encode
from twin_state import risk_batch
from twin_state.catalogue import Metric
from twin_state.profile import HYPERCAPNIC, Profile
from twin_state.store import InMemoryTwinStore
from twin_state.twin import Reading

T0 = 1_763_942_400_000
NOW = T0 + 10**8


class Profiles:
    def __init__(self, profiles: Sequence[Profile]) -> None:
        self.stored = {p.patient_id: p for p in profiles}

    async def get_many(self, patient_ids: Sequence[str]) -> dict[str, Profile]:
        return {pid: self.stored[pid] for pid in patient_ids if pid in self.stored}


@pytest.fixture(autouse=True)
def always_vectorised(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every risk through numpy, even a batch's single evaluation (``risk_many`` hands those to ``risk`` otherwise)."""
    monkeypatch.setattr(risk_batch, "SCALAR_BELOW", 0)


@functools.cache
def ward(seed: int = 8, patients: int = 8, hours: float = 3.0) -> tuple[RawMessage, ...]:
    """Simulated patients, half of them deteriorating, with nurses' entries (new confusion, oxygen) now and then, a
    cuff reading the twin refuses (a re-measure prompt) and a reading from the future."""
    readings = [r for _, r in simulate(patients, hours * 3600.0, rate=0.25, seed=seed, start_ms=T0,
                                       deteriorating_share=0.5)]
    rng = random.Random(seed)
    out: list[Reading] = []
    for r in readings:
        out.append(r)
        if rng.random() < 0.002:
            metric, value = rng.choice([(Metric.CONSCIOUSNESS, 1.0), (Metric.CONSCIOUSNESS, 0.0),
                                        (Metric.O2_FLOW, 2.0), (Metric.O2_FLOW, 0.0)])
            out.append(Reading(r.patient_id, "nurse", metric, value, r.measured_at, len(out)))
        if rng.random() < 0.001:
            out.append(Reading(r.patient_id, f"{r.patient_id}-cuff", Metric.BP_SYSTOLIC, 72.0, r.measured_at + 1,
                               10**6 + len(out)))
    out.append(Reading(readings[0].patient_id, "wrist", Metric.HEART_RATE, 80.0, NOW + 10**9, 10**7))
    return tuple(RawMessage(0, i, r.patient_id.encode(), encode(r)) for i, r in enumerate(out))


def profiles(messages: Sequence[RawMessage]) -> Profiles:
    pids = sorted({m.key.decode() for m in messages if m.key})
    return Profiles([
        Profile(pid, "ward-7", T0, conditions=frozenset({HYPERCAPNIC}) if i % 3 == 0 else frozenset(),
                targets={Metric.HEART_RATE: (50.0, 120.0)} if i % 3 == 1 else {})
        for i, pid in enumerate(pids)])


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[AlertEvent]] = []

    async def __call__(self, events: Sequence[AlertEvent]) -> None:
        self.batches.append(list(events))


async def run(messages: Sequence[RawMessage], cuts: Sequence[int], batch_risk: bool
              ) -> tuple[Recorder, InMemoryTwinStore, BatchProcessor, list[list[AlertEvent]]]:
    store, recorder = InMemoryTwinStore(), Recorder()
    proc = BatchProcessor(store, profiles=profiles(messages), publish=recorder, batch_risk=batch_risk)
    per_batch = []
    for a, b in itertools.pairwise(sorted({0, len(messages), *(c for c in cuts if 0 < c < len(messages))})):
        per_batch.append((await proc.process(messages[a:b], NOW)).alert_events)
    return recorder, store, proc, per_batch


async def assert_same(messages: Sequence[RawMessage], cuts: Sequence[int]) -> list[AlertEvent]:
    one, one_store, one_proc, one_batches = await run(messages, cuts, batch_risk=False)
    many, many_store, many_proc, many_batches = await run(messages, cuts, batch_risk=True)
    assert many.batches == one.batches  # every event, its id, order and reason, in the same publish calls
    assert many_batches == one_batches
    pids = await one_store.patient_ids()
    assert await many_store.patient_ids() == pids
    for pid in pids:
        assert await many_store.get(pid) == await one_store.get(pid)
        assert many_store._extras.get(pid) == one_store._extras.get(pid)  # the packed alert states saved
        assert many_proc.alerts(pid) == one_proc.alerts(pid)
    return [e for batch in one.batches for e in batch]


@pytest.mark.parametrize("cut", ["whole", "every 1", "every 7", "every 333", "random"])
async def test_batched_risk_changes_no_alert_twin_or_saved_state(cut: str) -> None:
    messages = ward()
    if cut == "every 1":
        messages = messages[:4000]  # one reading a batch: every evaluation alone in its batch
    n = len(messages)
    cuts = {"whole": [], "every 1": list(range(n)), "every 7": list(range(0, n, 7)),
            "every 333": list(range(0, n, 333)), "random": random.Random(5).sample(range(n), 40)}[cut]
    events = await assert_same(messages, cuts)
    if cut != "every 1":
        # The stream is worth comparing: alerts raised, escalated and resolved, re-measure prompts among them.
        kinds = {(e.condition, e.kind) for e in events}
        assert {(Condition.CLINICAL, Kind.RAISED), (Condition.CLINICAL, Kind.ESCALATED),
                (Condition.UNCONFIRMED, Kind.RAISED)} <= kinds, kinds
        assert len(events) > 20


async def test_batched_risk_on_another_ward_and_redelivered_batches() -> None:
    messages = ward(seed=3, patients=10, hours=1.5)
    cuts = random.Random(3).sample(range(len(messages)), 25)
    await assert_same(messages, cuts)
    # A batch delivered twice (after a crash between publish and commit) and one overlapping the last.
    await assert_same([*messages[:2000], *messages[1500:2500], *messages[:2500], *messages[2500:]], [2000, 3000])
