"""One contract for every TwinStore: the in-memory one used by unit tests and the Redis one used in production."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from tests.conftest import Services
from twin_state.catalogue import Metric
from twin_state.packed import from_twin
from twin_state.redis_store import SAVE_CHUNK, RedisTwinStore
from twin_state.store import InMemoryTwinStore, TwinStore
from twin_state.twin import Position, Reading, Twin, new_twin, step

pytestmark = pytest.mark.integration


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, services: Services) -> AsyncIterator[TwinStore]:
    if request.param == "memory":
        yield InMemoryTwinStore()
        return
    client = Redis.from_url(services.redis_url)
    try:
        yield RedisTwinStore(client, prefix=f"c{uuid.uuid4().hex[:8]}")
    finally:
        await client.aclose()


def twin_at(pid: str, partition: int, offset: int, value: float = 72.0) -> Twin:
    reading = Reading(pid, "wrist", Metric.HEART_RATE, value, 1_763_942_400_000 + offset, offset, 0.9)
    return step(new_twin(pid), reading, Position(partition, offset))[0]


async def test_saves_and_loads_exactly(store: TwinStore) -> None:
    twins = [twin_at(f"p-{i}", 0, 10 + i, 60.0 + i / 3) for i in range(20)]
    assert await store.save_many(twins) == 20
    loaded = await store.load_many([t.patient_id for t in twins] + ["never-seen"])
    assert loaded == {t.patient_id: t for t in twins}
    assert await store.get("p-3") == twins[3]
    assert await store.get("never-seen") is None
    assert sorted(await store.patient_ids()) == sorted(t.patient_id for t in twins)


async def test_only_newer_positions_overwrite(store: TwinStore) -> None:
    newer = twin_at("p-1", 2, 100, 90.0)
    assert await store.save_many([newer]) == 1
    assert await store.save_many([twin_at("p-1", 2, 99, 50.0), twin_at("p-1", 2, 100, 51.0)]) == 0
    assert await store.get("p-1") == newer
    newest = twin_at("p-1", 2, 101, 52.0)
    assert await store.save_many([newest]) == 1
    assert await store.get("p-1") == newest


async def test_a_different_partition_wins_after_repartitioning(store: TwinStore) -> None:
    await store.save_many([twin_at("p-1", 0, 1_000)])
    moved = twin_at("p-1", 5, 3)
    assert await store.save_many([moved]) == 1
    assert await store.get("p-1") == moved


async def test_empty_calls_are_harmless(store: TwinStore) -> None:
    assert await store.save_many([]) == 0
    assert await store.load_many([]) == {}


async def test_a_large_batch_is_written_once_in_several_script_calls(store: TwinStore) -> None:
    # More twins than one Redis script call takes (SAVE_CHUNK), each with history and alert state: every twin,
    # point and state lands once, and the same batch again (a redelivery) writes nothing and adds no points.
    n = SAVE_CHUNK * 2 + 7
    twins = [twin_at(f"p-{i}", i % 8, 100 + i, 60.0 + i % 50) for i in range(n)]
    history = {t.patient_id: [(1_763_942_400_000 + i, "heart_rate", 70.0, 70.5, 1.5, "applied"),
                              (1_763_942_460_000 + i, "heart_rate", 71.0, 70.9, 1.4, "applied")]
               for i, t in enumerate(twins)}
    alert_states = {t.patient_id: f"alerts-{i}".encode() for i, t in enumerate(twins) if i % 3 == 0}
    assert await store.save_many(twins, history, alert_states) == n
    assert await store.save_many(twins, history, alert_states) == 0
    records = await store.load_records([t.patient_id for t in twins])
    assert {pid: twin for pid, (twin, _) in records.items()} == {t.patient_id: t for t in twins}
    assert {pid: alert_state for pid, (_, alert_state) in records.items() if alert_state} == alert_states
    for i in (0, SAVE_CHUNK, n - 1):
        assert await store.history(f"p-{i}") == history[f"p-{i}"]


async def test_the_partition_index_collects_patients_per_partition_idempotently(store: TwinStore) -> None:
    await store.index_partitions({0: ["p-2", "p-1"], 3: ["p-3"], -1: ["never-placed"]})
    await store.index_partitions({0: ["p-1", "p-4"], 5: []})
    assert await store.partition_members(0) == ["p-1", "p-2", "p-4"]
    assert await store.partition_members(3) == ["p-3"]
    assert await store.partition_members(5) == [] == await store.partition_members(-1)


async def test_packed_twins_save_and_load_in_either_form(store: TwinStore) -> None:
    # The worker saves packed twins (twin_state.packed); the feed and CLI read them as readable twins, a restarted
    # worker as packed ones; a twin stored by older code (codec.pack) reads back packed too.
    readable = [twin_at(f"p-{i}", 1, 10 + i, 60.0 + i / 7) for i in range(4)]
    packed_twins = [from_twin(t) for t in readable[:3]]
    assert await store.save_many([*packed_twins, readable[3]], alert_states={"p-0": b"state-0"}) == 4
    packed_twins[0].buf[-1] ^= 1  # changing the processor's copy afterwards changes nothing stored
    records = await store.load_records([t.patient_id for t in readable])
    assert {pid: twin for pid, (twin, _) in records.items()} == {t.patient_id: t for t in readable}
    loaded = await store.load_packed([t.patient_id for t in readable] + ["never-seen"])
    assert {pid: twin for pid, (twin, _) in loaded.items()} == {t.patient_id: from_twin(t) for t in readable}
    assert loaded["p-0"][1] == b"state-0" and loaded["p-1"][1] is None
    assert await store.get("p-2") == readable[2]
    older = from_twin(twin_at("p-1", 1, 5, 99.0))
    assert await store.save_many([older]) == 0  # the newer-than rule holds for packed twins
    assert await store.save_alert_states([(from_twin(readable[1]), b"state-1")]) == 1
    assert (await store.load_packed(["p-1"]))["p-1"][1] == b"state-1"
