"""The twin store on a real Redis Cluster (one node holding all 16384 slots, which enforces the same rule as a
big cluster: one script call, or one multi-key command, may only touch keys of one slot).

A patient's twin and history keys carry the hash tag ``{patient_id}``, so they share a slot; a batch of many
patients spans many slots, and the store splits its writes per slot on a cluster. The cluster is the session's
``cluster_url`` fixture (tests/support/redis_cluster.py); the worker on it end to end is
tests/e2e/test_redis_cluster_worker.py.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis, RedisCluster
from redis.crc import key_slot
from redis.exceptions import ResponseError

from feed.index import FeedIndex
from streams.connect_check import explain_redis, probe_redis
from streams.security import redis_client
from streams.settings import Settings
from tests.conftest import Services
from twin_state.catalogue import Metric
from twin_state.profile import Profile, Status
from twin_state.redis_store import RedisProfileStore, RedisTwinStore
from twin_state.twin import Position, Reading, Twin, new_twin, step

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(cluster_url: str) -> AsyncIterator[RedisTwinStore]:
    client = RedisCluster.from_url(cluster_url)
    try:
        yield RedisTwinStore(client, prefix=f"k{uuid.uuid4().hex[:8]}")  # type: ignore[arg-type]
    finally:
        await client.aclose()


def twin_at(pid: str, partition: int, offset: int) -> Twin:
    reading = Reading(pid, "wrist", Metric.HEART_RATE, 70.0 + offset % 9, 1_763_942_400_000 + offset, offset, 0.9)
    return step(new_twin(pid), reading, Position(partition, offset))[0]


async def test_one_patients_keys_share_a_slot_and_patients_spread(store: RedisTwinStore) -> None:
    pids = [f"p-{i}" for i in range(50)]
    assert all(key_slot(store.key(p).encode()) == key_slot(store.history_key(p).encode()) for p in pids)
    assert len({key_slot(store.key(p).encode()) for p in pids}) > 40


async def test_a_batch_of_many_patients_is_written_and_read_back_on_a_cluster(store: RedisTwinStore) -> None:
    twins = [twin_at(f"p-{i}", i % 8, 10 + i) for i in range(300)]
    history = {t.patient_id: [(1_763_942_400_000, "heart_rate", 70.0, 70.2, 1.1, "applied")] for t in twins}
    alert_states = {t.patient_id: b"alert-state" for t in twins[:5]}
    # Without the per-slot split this is one script call over 600 keys in ~300 slots: CROSSSLOT.
    assert await store.save_many(twins, history, alert_states) == 300
    assert await store.save_many(twins, history, alert_states) == 0  # redelivery: nothing newer, no points added
    records = await store.load_records([t.patient_id for t in twins])
    assert {pid: twin for pid, (twin, _) in records.items()} == {t.patient_id: t for t in twins}
    assert {pid: alert_state for pid, (_, alert_state) in records.items() if alert_state} == alert_states
    assert await store.history("p-7") == history["p-7"]


async def test_the_partition_index_on_a_cluster(store: RedisTwinStore) -> None:
    await store.index_partitions({p: [f"p-{p}-{i}" for i in range(50)] for p in range(8)})
    for p in range(8):
        assert await store.partition_members(p) == sorted(f"p-{p}-{i}" for i in range(50))


async def test_profiles_and_team_sets_on_a_cluster(cluster_url: str) -> None:
    """Profile and team sets live on different slots: saves, transfers, discharges and reconcile still work."""
    client = RedisCluster.from_url(cluster_url)
    try:
        profiles = RedisProfileStore(client, prefix=f"c{uuid.uuid4().hex[:8]}")  # type: ignore[arg-type]
        t0 = 1_763_942_400_000
        for i in range(20):
            assert await profiles.save(Profile(f"p-{i}", "ward-a", t0))
        assert await profiles.save(Profile("p-1", "ward-b", t0 + 1))
        assert await profiles.save(Profile("p-2", "ward-a", t0 + 1, Status.DISCHARGED))
        assert await profiles.team("ward-b") == ["p-1"]
        assert "p-1" not in await profiles.team("ward-a") and "p-2" not in await profiles.team("ward-a")
        stored = await profiles.get("p-2")
        assert stored is not None and stored.last_discharged_at == t0 + 1
        assert len(await profiles.get_many([f"p-{i}" for i in range(25)])) == 20
        await client.sadd(profiles.team_key("ward-b"), "p-3")
        await client.srem(profiles.team_key("ward-a"), "p-4")
        assert await profiles.reconcile() == (1, 1)
        assert await profiles.team("ward-b") == ["p-1"] and "p-4" in await profiles.team("ward-a")
    finally:
        await client.aclose()


async def test_alert_states_are_written_per_patient_on_a_cluster(store: RedisTwinStore) -> None:
    """A cluster pipeline takes no scripts: the alert states of a sweep or an acknowledgement go one call each."""
    twins = [twin_at(f"p-{i}", 0, 10 + i) for i in range(100)]
    assert await store.save_many(twins) == 100
    stale = twin_at("p-0", 0, 9)  # an older position than the one stored: its state must not land
    assert await store.save_alert_states([(t, f"state-{t.patient_id}".encode()) for t in twins] + [(stale, b"old")]) \
        == 100
    assert await store.get_alert_state("p-0") == b"state-p-0" and await store.get_alert_state("p-99") == b"state-p-99"


async def test_the_feed_indexes_on_a_cluster(cluster_url: str) -> None:
    """Each index's two keys (sorted set and hash) share a slot through the team's or the patient's hash tag."""
    client = RedisCluster.from_url(cluster_url)
    try:
        index = FeedIndex(client, f"f{uuid.uuid4().hex[:8]}")  # type: ignore[arg-type]
        for team in ("ward-a", "ward-b"):
            for i in range(3):
                assert await index.add_audit({"id": f"{team}-{i}", "team": team, "at": 1000 + i})
        assert not await index.add_audit({"id": "ward-a-0", "team": "ward-a", "at": 1000})
        assert await index.add_alert_event({"event_id": "e-1", "patient_id": "p-1", "at": 5})
        page, more = await index.audit("ward-b", None, None, 0, 2)
        assert [r["id"] for r in page] == ["ward-b-2", "ward-b-1"] and more
        assert [e["event_id"] for e in (await index.alert_history("p-1", None, None, 0, 10))[0]] == ["e-1"]
    finally:
        await client.aclose()


async def test_the_cluster_setting_builds_a_cluster_client_that_reaches_the_cluster(cluster_url: str) -> None:
    settings = Settings(redis_url=cluster_url, redis_cluster=True)  # type: ignore[arg-type]
    client = redis_client(settings)
    try:
        assert isinstance(client, RedisCluster) and await client.ping()
        assert await probe_redis(settings) is None
    finally:
        await client.aclose()


async def test_a_plain_client_on_a_cluster_and_a_cluster_client_on_a_single_redis_are_named(
    cluster_url: str, services: Services
) -> None:
    """The two ways to get the setting wrong are each one line naming TWINMON_REDIS_CLUSTER."""
    client = Redis.from_url(cluster_url)
    try:
        plain = RedisTwinStore(client, prefix=f"w{uuid.uuid4().hex[:8]}")
        with pytest.raises(ResponseError) as crossslot:  # one script call over many slots
            await plain.save_many([twin_at(f"p-{i}", 0, i) for i in range(20)])
    finally:
        await client.aclose()
    said = explain_redis(crossslot.value)
    assert said is not None and said.definitive and "set TWINMON_REDIS_CLUSTER=true" in said.message
    wrong = await probe_redis(Settings(redis_url=services.redis_url, redis_cluster=True))  # type: ignore[arg-type]
    assert wrong is not None and wrong.definitive
    assert wrong.message.startswith("TWINMON_REDIS_CLUSTER is on but the Redis at TWINMON_REDIS_URL is not a cluster")
