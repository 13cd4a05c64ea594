"""Twins loaded when a partition is assigned: the partition index the processor keeps, what it preloads (enrolled
patients only), that the result equals loading at the first reading, and that a rebalance stops it."""

from __future__ import annotations

from collections.abc import Sequence

from alerts.policy import Condition
from simulation.simulator import simulate
from streams.processor import BatchProcessor, RawMessage
from streams.schema import encode
from twin_state.packed import PackedTwin
from twin_state.profile import Profile, Status
from twin_state.store import InMemoryTwinStore
from twin_state.twin import Twin

T0 = 1_763_942_400_000
NOW = T0 + 3_600_000


class Profiles:
    def __init__(self, profiles: Sequence[Profile]) -> None:
        self.by_id = {p.patient_id: p for p in profiles}

    async def get_many(self, patient_ids: Sequence[str]) -> dict[str, Profile]:
        return {pid: self.by_id[pid] for pid in patient_ids if pid in self.by_id}


def messages(n: int, start_s: float, duration: float, offset0: int = 0) -> list[RawMessage]:
    """Readings of ``n`` patients, patient i on partition i % 2, offsets counting per partition from ``offset0``."""
    out, offsets = [], {0: offset0, 1: offset0}
    for _, r in simulate(n, start_s + duration, rate=1.0, seed=9, start_ms=T0):
        if r.measured_at < T0 + start_s * 1000:
            continue
        part = int(r.patient_id.rsplit("-", 1)[-1]) % 2
        out.append(RawMessage(part, offsets[part], r.patient_id.encode(), encode(r)))
        offsets[part] += 1
    return out


def enrolled(ids: Sequence[str], discharged: Sequence[str] = ()) -> Profiles:
    return Profiles([Profile(pid, "ward-1", T0, status=Status.DISCHARGED if pid in discharged else Status.ENROLLED)
                     for pid in ids])


async def stored_after_first_hour(n: int = 6) -> tuple[InMemoryTwinStore, list[str]]:
    store = InMemoryTwinStore()
    first = BatchProcessor(store, profiles=Profiles([]))
    await first.process(messages(n, 0, 120), NOW)
    return store, sorted(await store.patient_ids())


async def test_patients_are_recorded_on_their_partitions_once_their_twins_are_saved() -> None:
    store, ids = await stored_after_first_hour()
    assert await store.partition_members(0) == sorted(p for p in ids if int(p[-1]) % 2 == 0)
    assert await store.partition_members(1) == sorted(p for p in ids if int(p[-1]) % 2 == 1)


async def test_preload_makes_the_enrolled_patients_twins_resident_as_stored() -> None:
    store, ids = await stored_after_first_hour()
    profiles = enrolled(ids[:-1], discharged=[ids[0]])  # ids[-1] never enrolled; ids[0] discharged
    proc = BatchProcessor(store, profiles=profiles)
    assert await proc.preload([0, 1], chunk=2) == len(ids) - 2
    for pid in ids[1:-1]:
        assert proc.twin(pid) == await store.get(pid)
        assert proc.profile(pid) == profiles.by_id[pid]
    assert proc.twin(ids[0]) is None and proc.twin(ids[-1]) is None
    assert await proc.preload([0, 1]) == 0  # already resident


async def test_readings_after_a_preload_give_the_twins_that_loading_at_the_reading_gives() -> None:
    store, ids = await stored_after_first_hour()
    later = messages(6, 120, 60, offset0=10_000)
    twins: list[dict[str, Twin | None]] = []
    for preload in (True, False):
        copy = InMemoryTwinStore([t for t in [await store.get(pid) for pid in ids] if t is not None])
        await copy.index_partitions({p: await store.partition_members(p) for p in (0, 1)})
        proc = BatchProcessor(copy, profiles=enrolled(ids))
        if preload:
            await proc.preload([0, 1])
        await proc.process(later, NOW)
        twins.append({pid: await copy.get(pid) for pid in ids})
    assert twins[0] == twins[1]
    assert all(t is not None and t.offset >= 10_000 for t in twins[0].values())


async def test_a_rebalance_during_a_preload_stops_it() -> None:
    store, ids = await stored_after_first_hour()
    proc = BatchProcessor(store, profiles=enrolled(ids))
    real = store.load_packed
    calls = 0

    async def load_then_rebalance(patient_ids: Sequence[str]) -> dict[str, tuple[PackedTwin, bytes | None]]:
        nonlocal calls
        calls += 1
        got = await real(patient_ids)
        proc.forget([0, 1])  # the partitions were revoked while this chunk loaded
        return got

    store.load_packed = load_then_rebalance  # type: ignore[method-assign]
    assert await proc.preload([0, 1], chunk=1) == 0
    assert calls == 1 and proc.resident == 0


async def test_a_preloaded_patient_who_never_sends_again_is_swept_for_no_data() -> None:
    store, ids = await stored_after_first_hour(2)
    stored = [await store.get(pid) for pid in ids]
    last = max(v.updated_at for t in stored if t is not None for v in t.vitals.values())
    later = last + 3_600_000
    for preload in (True, False):
        proc = BatchProcessor(store, profiles=enrolled(ids))
        if preload:
            await proc.preload([0, 1])
        for minutes in (0, 10, 20):  # the no-data condition persists, then is raised
            await proc.sweep(later + minutes * 60_000)
        states = [proc.alerts(pid) for pid in ids]
        if preload:
            assert all(s is not None and Condition.NO_DATA in s.open for s in states)
        else:
            assert states == [None, None]  # loaded only at a reading: a silent patient was never swept
