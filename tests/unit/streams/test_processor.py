"""A batch through validation, the twin core and a store: dead letters, redelivery, and the worker's cache."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest
from prometheus_client import CollectorRegistry

from alerts.policy import AlertEvent, Condition, Kind, Level
from simulation.simulator import simulate
from streams.metrics import Metrics
from streams.processor import BatchProcessor, RawMessage
from streams.schema import Reason, encode
from twin_state.packed import PackedTwin
from twin_state.store import InMemoryTwinStore
from twin_state.twin import Outcome, Twin

T0 = 1_763_942_400_000
NOW = T0 + 3_600_000


def messages(n_patients: int = 4, duration: float = 120.0) -> list[RawMessage]:
    return [
        RawMessage(0, i, r.patient_id.encode(), encode(r))
        for i, (_, r) in enumerate(simulate(n_patients, duration, rate=1.0, seed=5, start_ms=T0))
    ]


async def test_valid_and_bad_messages_in_one_batch() -> None:
    registry = CollectorRegistry()
    store = InMemoryTwinStore()
    proc = BatchProcessor(store, Metrics(registry))
    good = messages()
    bad = [RawMessage(0, 10_000, b"p-x", b"{not json"), RawMessage(0, 10_001, b"p-x", b'{"metric":"glucose"}')]
    result = await proc.process(good + bad, NOW)

    assert [(m.offset, r.reason) for m, r in result.dead_letters] == [
        (10_000, Reason.NOT_JSON), (10_001, Reason.MISSING_FIELD)
    ]
    assert sum(result.outcomes.values()) == len(good)
    assert result.written == 4 == len(await store.patient_ids())
    assert registry.get_sample_value("twinmon_events_dead_lettered_total", {"reason": "not_json"}) == 1
    assert registry.get_sample_value("twinmon_readings_total", {"outcome": "applied"}) == result.outcomes[
        Outcome.APPLIED
    ]
    assert registry.get_sample_value("twinmon_twins_resident") == 4


async def test_redelivered_batch_changes_nothing_even_after_the_cache_is_dropped() -> None:
    store = InMemoryTwinStore()
    proc = BatchProcessor(store)
    batch = messages()
    await proc.process(batch, NOW)
    before = {pid: await store.get(pid) for pid in await store.patient_ids()}

    again = await proc.process(batch, NOW)
    assert again.outcomes == {Outcome.REDELIVERED: len(batch)} and again.written == 0

    proc.forget()  # as after a rebalance: twins come back from the store
    third = await proc.process(batch[len(batch) // 2 :], NOW)
    assert third.outcomes == {Outcome.REDELIVERED: len(batch) - len(batch) // 2}
    assert {pid: await store.get(pid) for pid in await store.patient_ids()} == before


async def test_split_batches_equal_one_batch() -> None:
    batch = messages()
    whole, split = InMemoryTwinStore(), InMemoryTwinStore()
    await BatchProcessor(whole).process(batch, NOW)
    proc = BatchProcessor(split)
    for i in range(0, len(batch), 7):
        await proc.process(batch[i : i + 7], NOW)
    assert [await whole.get(p) for p in await whole.patient_ids()] == [
        await split.get(p) for p in await split.patient_ids()
    ]


async def test_forget_by_partition_keeps_other_partitions_cached() -> None:
    proc = BatchProcessor(InMemoryTwinStore())
    batch = [RawMessage(i % 2, i, m.key, m.value) for i, m in enumerate(messages())]
    await proc.process(batch, NOW)
    assert proc.resident == 4
    proc.forget([0])
    assert 0 < proc.resident < 4


def deteriorating(duration: float = 3 * 3600.0) -> list[RawMessage]:
    readings = simulate(6, duration, rate=0.25, seed=8, start_ms=T0, deteriorating_share=0.5)
    return [RawMessage(0, i, r.patient_id.encode(), encode(r)) for i, (_, r) in enumerate(readings)]


class Recorder:
    def __init__(self) -> None:
        self.events: list[AlertEvent] = []

    async def __call__(self, events: Sequence[AlertEvent]) -> None:
        self.events.extend(events)


async def test_deterioration_raises_alerts_that_are_published_before_twins_are_saved() -> None:
    store = InMemoryTwinStore()
    order: list[str] = []

    async def publish(events: Sequence[AlertEvent]) -> None:
        order.append("publish")

    real_save = store.save_many

    async def save_many(*args: object, **kwargs: object) -> int:
        order.append("save")
        return await real_save(*args, **kwargs)  # type: ignore[arg-type]

    store.save_many = save_many  # type: ignore[method-assign]
    recorder = Recorder()
    proc = BatchProcessor(store, profiles=None, publish=recorder)
    batch = deteriorating()
    for i in range(0, len(batch), 500):
        await proc.process(batch[i : i + 500], NOW + 10**8)
    raised = [e for e in recorder.events if e.kind is Kind.RAISED and e.condition is Condition.CLINICAL]
    assert {e.patient_id for e in raised}, "a deteriorating cohort raised no clinical alert"
    assert all(e.level >= Level.LOW for e in raised)
    # The reason says what the level rests on and what was assumed (nobody recorded consciousness or oxygen).
    assert all(e.reason.startswith("NEWS2 ") for e in raised)
    assert all(e.reason.endswith("assumed: consciousness alert, air") for e in raised)
    proc2 = BatchProcessor(store, publish=publish)
    await proc2.process(deteriorating()[:50], NOW + 10**8)
    assert order.count("publish") <= order.count("save")


async def test_alert_events_do_not_depend_on_batching_or_on_a_crash_between_publish_and_save() -> None:
    batch = deteriorating()
    whole = Recorder()
    await BatchProcessor(InMemoryTwinStore(), publish=whole).process(batch, NOW + 10**8)

    split = Recorder()
    proc = BatchProcessor(InMemoryTwinStore(), publish=split)
    for i in range(0, len(batch), 333):
        await proc.process(batch[i : i + 333], NOW + 10**8)
    assert [e.event_id for e in split.events] == [e.event_id for e in whole.events]

    # A worker publishes a batch's events and dies before saving; its successor redoes the batch.
    store = InMemoryTwinStore()
    first, second = Recorder(), Recorder()
    await BatchProcessor(store, publish=first).process(batch[:3000], NOW + 10**8)

    class Dies(InMemoryTwinStore):
        """Reads the real store; dies on the write."""

        async def load_records(self, patient_ids: Sequence[str]) -> dict[str, tuple[Twin, bytes | None]]:
            return await store.load_records(patient_ids)

        async def load_packed(self, patient_ids: Sequence[str]) -> dict[str, tuple[PackedTwin, bytes | None]]:
            return await store.load_packed(patient_ids)

        async def save_many(self, *args: object, **kwargs: object) -> int:
            raise ConnectionError("killed")

    doomed = Recorder()
    with pytest.raises(ConnectionError):
        await BatchProcessor(Dies(), publish=doomed).process(batch[3000:6000], NOW + 10**8)
    assert doomed.events, "the doomed batch should have had events to publish"
    survivor = BatchProcessor(store, publish=second)
    await survivor.process(batch[3000:], NOW + 10**8)
    ids = [e.event_id for e in first.events + doomed.events + second.events]
    assert sorted(set(ids)) == sorted(e.event_id for e in whole.events)  # after de-duplication by id


@pytest.mark.parametrize("batch_risk", [True, False])
async def test_risk_runs_at_most_every_ten_seconds_of_event_time(monkeypatch: pytest.MonkeyPatch,
                                                                 batch_risk: bool) -> None:
    import streams.processor as processor_module

    calls: list[int] = []
    real, real_many = processor_module.risk, processor_module.risk_many

    def counting(twin: Twin, profile: object, now_ms: int, settings: object) -> object:
        calls.append(now_ms)
        return real(twin, profile, now_ms, settings)  # type: ignore[arg-type]

    def counting_many(items: Sequence[tuple[Twin, object, int]], settings: object) -> object:
        calls.extend(now_ms for _, _, now_ms in items)
        return real_many(items, settings)  # type: ignore[arg-type]

    monkeypatch.setattr(processor_module, "risk", counting)
    monkeypatch.setattr(processor_module, "risk_many", counting_many)
    one = [RawMessage(0, i, r.patient_id.encode(), encode(r))
           for i, (_, r) in enumerate(simulate(1, 600, rate=1.0, seed=3, start_ms=T0))]
    await BatchProcessor(InMemoryTwinStore(), batch_risk=batch_risk).process(one, NOW)
    assert 55 <= len(calls) <= 62, len(calls)  # ~600 readings over 600 s: one evaluation per 10 s
    # (a refused cuff reading, which is evaluated at once for its re-measure prompt, is not in this stream)
    assert all(b - a >= 10_000 for a, b in itertools.pairwise(calls))
