"""A batch's risks computed together (``risk_many``) give what evaluating each reading's patient at once (``risk``)
gave: the same alert events in the same order, the same twins and the same saved alert states, however the stream is
cut into batches."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

import pytest

from alerts.policy import AlertEvent, Condition, Kind
from streams.processor import BatchProcessor, RawMessage
from tests.support.ward import NOW, Recorder, profiles, ward
from twin_state import risk_batch
from twin_state.store import InMemoryTwinStore


@pytest.fixture(autouse=True)
def always_vectorised(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every risk through numpy, even a batch's single evaluation (``risk_many`` hands those to ``risk`` otherwise)."""
    monkeypatch.setattr(risk_batch, "SCALAR_BELOW", 0)


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
