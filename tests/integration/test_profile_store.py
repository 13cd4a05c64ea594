"""Profiles and team sets in the real Redis: the profile is the truth, the team sets follow it whatever the order
of saves, retries and crashes between the two writes, and ``reconcile`` repairs sets left behind."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from tests.conftest import Services
from twin_state import profile_codec
from twin_state.profile import Profile, Status
from twin_state.redis_store import RedisProfileStore

pytestmark = pytest.mark.integration
T0 = 1_763_942_400_000


@pytest.fixture
async def store(services: Services) -> AsyncIterator[RedisProfileStore]:
    client = Redis.from_url(services.redis_url)
    try:
        yield RedisProfileStore(client, prefix=f"p{uuid.uuid4().hex[:8]}")
    finally:
        await client.aclose()


def enrolled(team: str, at: int, pid: str = "p-1") -> Profile:
    return Profile(pid, team, at)


def discharged(team: str, at: int, pid: str = "p-1") -> Profile:
    return Profile(pid, team, at, Status.DISCHARGED)


async def crash_after_profile_write(store: RedisProfileStore, p: Profile) -> None:
    """The first of save's two steps only: the worker died (or the connection dropped) before the team sets."""
    team = p.care_team if p.status is Status.ENROLLED else ""
    await store._save(keys=[store.key(p.patient_id)], args=[p.updated_at, team, profile_codec.pack(p)])


async def members(store: RedisProfileStore, *teams: str) -> dict[str, list[str]]:
    return {t: await store.team(t) for t in teams}


async def test_a_retry_after_a_crash_between_the_two_writes_moves_the_patient(store: RedisProfileStore) -> None:
    assert await store.save(enrolled("ward-a", T0))
    move = enrolled("ward-b", T0 + 1)
    await crash_after_profile_write(store, move)
    assert await members(store, "ward-a", "ward-b") == {"ward-a": ["p-1"], "ward-b": []}  # the crash's damage
    assert await store.save(move)  # the replayed enrolment
    assert await members(store, "ward-a", "ward-b") == {"ward-a": [], "ward-b": ["p-1"]}


async def test_a_later_change_repairs_what_an_earlier_crash_left(store: RedisProfileStore) -> None:
    assert await store.save(enrolled("ward-a", T0))
    await crash_after_profile_write(store, enrolled("ward-b", T0 + 1))
    assert await store.save(enrolled("ward-c", T0 + 2))
    assert await members(store, "ward-a", "ward-b", "ward-c") == {"ward-a": [], "ward-b": [], "ward-c": ["p-1"]}
    # An older change replayed after that is refused, and still leaves the sets matching the stored profile.
    assert not await store.save(enrolled("ward-a", T0))
    assert await members(store, "ward-a", "ward-c") == {"ward-a": [], "ward-c": ["p-1"]}
    assert (await store.get("p-1")) == enrolled("ward-c", T0 + 2)


async def test_a_discharge_empties_every_set_and_is_remembered(store: RedisProfileStore) -> None:
    assert await store.save(enrolled("ward-a", T0))
    await crash_after_profile_write(store, discharged("ward-a", T0 + 5))
    assert await store.save(discharged("ward-a", T0 + 5))  # retried
    assert await members(store, "ward-a") == {"ward-a": []}
    stored = await store.get("p-1")
    assert stored is not None and stored.status is Status.DISCHARGED and stored.last_discharged_at == T0 + 5
    # A new enrolment starts a new episode: the discharge time stays as its boundary, retries do not move it.
    assert await store.save(enrolled("ward-b", T0 + 9))
    assert await store.save(enrolled("ward-b", T0 + 9))
    again = await store.get("p-1")
    assert again is not None and again.care_team == "ward-b" and again.last_discharged_at == T0 + 5
    assert (await store.get_many(["p-1", "nobody"])) == {"p-1": again}
    # A transfer is not a discharge: the episode goes on.
    assert await store.save(enrolled("ward-c", T0 + 12))
    moved = await store.get("p-1")
    assert moved is not None and moved.last_discharged_at == T0 + 5
    never = enrolled("ward-a", T0, pid="p-2")
    assert await store.save(never)
    assert (await store.get("p-2")) == never and never.last_discharged_at == 0


async def test_access_follows_the_profile_not_the_set(store: RedisProfileStore) -> None:
    assert await store.save(enrolled("ward-a", T0))
    assert await store.save(discharged("ward-b", T0, pid="p-2"))
    await store._redis.sadd(store.team_key("ward-b"), "p-1", "p-2")  # stale entries of an earlier defect
    assert list(await store.enrolled_in("ward-b", await store.team("ward-b"))) == []
    assert list(await store.enrolled_in("ward-a", ["p-1", "p-2"])) == ["p-1"]


async def test_reconcile_makes_every_set_match_the_profiles(store: RedisProfileStore) -> None:
    for i in range(30):
        assert await store.save(enrolled("ward-a" if i % 2 else "ward-b", T0, pid=f"p-{i:02d}"))
    assert await store.save(discharged("ward-a", T0 + 1, pid="p-01"))
    r = store._redis
    await r.sadd(store.team_key("ward-b"), "p-01", "p-03")  # discharged; another team's
    await r.sadd(store.team_key("ward-gone"), "p-05")  # a team nobody is in
    await r.srem(store.team_key("ward-a"), "p-07")  # an enrolled patient missing from their set
    before = await members(store, "ward-a", "ward-b", "ward-gone")
    assert await store.reconcile(dry_run=True) == (1, 3)
    assert await members(store, "ward-a", "ward-b", "ward-gone") == before, "a dry run changes nothing"
    assert await store.reconcile() == (1, 3)
    after = await members(store, "ward-a", "ward-b", "ward-gone")
    assert after["ward-a"] == [f"p-{i:02d}" for i in range(3, 30, 2)]
    assert after["ward-b"] == [f"p-{i:02d}" for i in range(0, 30, 2)]
    assert after["ward-gone"] == []
    assert await store.reconcile() == (0, 0)
