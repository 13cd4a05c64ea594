"""The twin store on a real Redis Cluster (one node holding all 16384 slots, which enforces the same rule as a
big cluster: one script call, or one multi-key command, may only touch keys of one slot).

A patient's twin and history keys carry the hash tag ``{patient_id}``, so they share a slot; a batch of many
patients spans many slots, and the store splits its writes per slot on a cluster.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisError

from tests.conftest import Services, free_port
from twin_state.catalogue import Metric
from twin_state.profile import Profile, Status
from twin_state.redis_store import RedisProfileStore, RedisTwinStore
from twin_state.twin import Position, Reading, Twin, new_twin, step

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster_url(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    assert shutil.which("redis-server"), "the services fixture installs redis-server"
    state: Path = tmp_path_factory.mktemp("redis-cluster")
    # A cluster node also listens on port + 10000 (the cluster bus), so its port must be 55535 or less.
    port = next(p for p in iter(free_port, None) if p <= 55535)
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
         "--cluster-config-file", str(state / "nodes.conf"), "--dir", str(state), "--save", "",
         "--appendonly", "no", "--daemonize", "no"],
        stdout=(state / "redis.log").open("wb"), stderr=subprocess.STDOUT,
    )
    try:
        client = SyncRedis(port=port)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except RedisError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    log = (state / "redis.log").read_text()
                    raise RuntimeError(f"redis-server (cluster) did not start: {log}") from None
                time.sleep(0.1)
        client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        while b"cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
            if time.monotonic() > deadline:
                raise RuntimeError("the one-node cluster never reached cluster_state:ok")
            time.sleep(0.1)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(30)


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
