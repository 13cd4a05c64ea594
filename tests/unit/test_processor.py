"""A batch through validation, the twin core and a store: dead letters, redelivery, and the worker's cache."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from streams.metrics import Metrics
from streams.processor import BatchProcessor, RawMessage
from streams.schema import Reason, encode
from streams.simulator import simulate
from twin_state.store import InMemoryTwinStore
from twin_state.twin import Outcome

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
