"""The worker's profile cache: it never keeps a profile the store does not hold (issue 13, findings 2 and 3)."""

from __future__ import annotations

from collections.abc import Sequence

from streams.processor import BatchProcessor, RawMessage
from streams.schema import encode
from twin_state.catalogue import Metric
from twin_state.profile import Profile, Status
from twin_state.store import InMemoryTwinStore
from twin_state.twin import Reading

T0 = 1_763_942_400_000


class Profiles:
    """The profile store's contract in memory: a save is applied only if it is newer than what is stored."""

    def __init__(self) -> None:
        self.stored: dict[str, Profile] = {}
        self.fetches = 0

    async def save(self, profile: Profile) -> bool:
        current = self.stored.get(profile.patient_id)
        if current is not None and profile.updated_at <= current.updated_at:
            return False
        self.stored[profile.patient_id] = profile
        return True

    async def get_many(self, patient_ids: Sequence[str]) -> dict[str, Profile]:
        self.fetches += 1
        return {pid: self.stored[pid] for pid in patient_ids if pid in self.stored}


def reading(partition: int, offset: int, t_s: int) -> RawMessage:
    r = Reading("p-1", "wrist", Metric.HEART_RATE, 72.0, T0 + t_s * 1000, offset, 0.9)
    return RawMessage(partition, offset, b"p-1", encode(r))


async def test_a_rebalance_drops_the_cached_profile_so_a_transfer_made_meanwhile_is_seen() -> None:
    store = Profiles()
    proc = BatchProcessor(InMemoryTwinStore(), profiles=store)
    assert await proc.apply_profile(Profile("p-1", "ward-7", T0), store.save)
    await proc.process([reading(3, 0, 0)], T0 + 1000)
    assert proc.profile("p-1") == store.stored["p-1"]
    # Partition 3 moves to another worker, which applies a transfer to ward 9; then it comes back.
    proc.forget([3])
    store.stored["p-1"] = Profile("p-1", "ward-9", T0 + 5000)
    await proc.process([reading(3, 1, 10)], T0 + 11_000)
    profile = proc.profile("p-1")
    assert profile is not None and profile.care_team == "ward-9"


async def test_forget_keeps_the_profiles_of_partitions_still_owned() -> None:
    store = Profiles()
    proc = BatchProcessor(InMemoryTwinStore(), profiles=store)
    await proc.apply_profile(Profile("p-1", "ward-7", T0), store.save)
    await proc.process([reading(2, 0, 0)], T0 + 1000)
    fetched = store.fetches
    proc.forget([3])
    assert proc.profile("p-1") is not None and store.fetches == fetched


async def test_a_profile_change_the_store_refused_is_not_used() -> None:
    store = Profiles()
    proc = BatchProcessor(InMemoryTwinStore(), profiles=store)
    assert await proc.apply_profile(Profile("p-1", "ward-9", T0 + 5000), store.save)
    # An older enrolment replayed after the transfer: refused by the store, so the worker keeps ward 9.
    assert not await proc.apply_profile(Profile("p-1", "ward-7", T0), store.save)
    profile = proc.profile("p-1")
    assert profile is not None and profile.care_team == "ward-9"
    # A newer one (a discharge) is stored and used.
    assert await proc.apply_profile(Profile("p-1", "ward-9", T0 + 9000, Status.DISCHARGED), store.save)
    profile = proc.profile("p-1")
    assert profile is not None and profile.status is Status.DISCHARGED
